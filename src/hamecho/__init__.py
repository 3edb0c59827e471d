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

from .core.affine import AffineLeapfrog  # noqa: E402
from .core.choices import AutoLeapfrog  # noqa: E402
from .core.engine import hamiltonian_core  # noqa: E402
from .core.fixed_point import FixedPointLeapfrog  # noqa: E402
from .core.gradients import BPTT, RHEL, SPSA, AbstractGradient, PhysicsAware  # noqa: E402
from .core.hamiltonians import SeparableHamiltonian  # noqa: E402
from .core.integrators import AbstractIntegrator, Leapfrog  # noqa: E402
from .core.memory import AbstractMemory  # noqa: E402
from .nn.api import init_optimizer, predict, train_step, value_and_grad  # noqa: E402
from .nn.hssm import HSSM, cast, count_parameters, trainable  # noqa: E402
from .nn.keywords import CoreOptions  # noqa: E402
from .nn.layers import HRU, LinearHRU, NonlinearHRU, retrace_error  # noqa: E402
from .nn.memory import RecomputeBlocks, TimeChunks  # noqa: E402
from .nn.streaming import Streaming  # noqa: E402

__all__ = ["AbstractGradient", "AbstractIntegrator", "AbstractMemory", "AffineLeapfrog", "AutoLeapfrog", "BPTT",
           "CoreOptions", "FixedPointLeapfrog", "HRU", "HSSM", "Leapfrog", "LinearHRU", "NonlinearHRU", "PhysicsAware",
           "RHEL", "RecomputeBlocks", "SPSA", "SeparableHamiltonian", "Streaming", "TimeChunks", "cast",
           "count_parameters", "hamiltonian_core", "init_optimizer", "predict", "retrace_error", "train_step",
           "trainable", "value_and_grad", "__version__"]
