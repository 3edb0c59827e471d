"""hamecho: Hamiltonian recurrent models trained by Recurrent Hamiltonian Echo Learning (RHEL).

    import hamecho as he
    model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, hru="linear", key=key)
    loss, grads = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=0.1))
    model, opt_state, loss = he.train_step(model, opt_state, x, y, optimizer, key=key)

Choices are small objects (docs/api.md): gradient ``RHEL`` | ``BPTT`` | ``PhysicsAware`` (a device's forward pass,
its twin's backward pass) | ``SPSA`` (loss evaluations only); integrator ``AutoLeapfrog`` (the
default: the leapfrog, its scan chosen per Hamiltonian) | ``Leapfrog`` | ``AffineLeapfrog`` |
``FixedPointLeapfrog``; memory ``None`` | ``RecomputeBlocks`` | ``TimeChunks`` | ``Streaming`` (the whole
stack with memory flat in the sequence length: RHEL, ``HSSM(norm="layer")``).
The layout of the package is described in docs/design.md.
"""
__version__ = "0.1.0"

import importlib

# Where each public name lives. They are imported on first use (PEP 562), so that ``import hamecho`` and the
# ``hamecho`` command start without loading JAX: the command restarts itself once with huge pages for malloc
# before anything heavy is imported (``hamecho.runtime``), and a restart after JAX had loaded would cost a second.
_PUBLIC = {
    "AffineLeapfrog": "core.affine",
    "AutoLeapfrog": "core.choices",
    "hamiltonian_core": "core.engine",
    "FixedPointLeapfrog": "core.fixed_point",
    "BPTT": "core.gradients", "RHEL": "core.gradients", "AbstractGradient": "core.gradients",
    "PhysicsAware": "core.gradients", "SPSA": "core.gradients",
    "SeparableHamiltonian": "core.hamiltonians",
    "AbstractIntegrator": "core.integrators", "Leapfrog": "core.integrators",
    "AbstractMemory": "core.memory",
    "CoreOptions": "nn.keywords",
    "init_optimizer": "nn.api", "predict": "nn.api", "train_step": "nn.api", "value_and_grad": "nn.api",
    "HSSM": "nn.hssm", "cast": "nn.hssm", "count_parameters": "nn.hssm", "trainable": "nn.hssm",
    "HRU": "nn.layers", "LinearHRU": "nn.layers", "NonlinearHRU": "nn.layers", "retrace_error": "nn.layers",
    "RecomputeBlocks": "nn.memory", "TimeChunks": "nn.memory",
    "Streaming": "nn.streaming",
    "DataParallel": "nn.parallel", "data_parallel": "nn.parallel",
    "enable_compilation_cache": "runtime",
}
_SUBPACKAGES = ("cli", "continuous", "core", "data", "nn", "physical", "runtime", "tools", "training")

__all__ = ["AbstractGradient", "AbstractIntegrator", "AbstractMemory", "AffineLeapfrog", "AutoLeapfrog", "BPTT",
           "CoreOptions", "DataParallel", "FixedPointLeapfrog", "HRU", "HSSM", "Leapfrog", "LinearHRU", "NonlinearHRU",
           "PhysicsAware", "RHEL", "RecomputeBlocks", "SPSA", "SeparableHamiltonian", "Streaming", "TimeChunks",
           "cast", "count_parameters", "data_parallel", "enable_compilation_cache", "hamiltonian_core",
           "init_optimizer", "predict", "retrace_error", "train_step", "trainable", "value_and_grad", "__version__"]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'hamecho' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_PUBLIC) | set(_SUBPACKAGES))
