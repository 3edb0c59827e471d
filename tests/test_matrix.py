"""Every (gradient × integrator × memory) combination against float64 BPTT, for both HRUs (issue #13).

Integrators include the physical devices (#15: the ideal one and a simulated one with every knob off);
memories include ``Streaming`` (#14), whose problems use ``norm="layer"`` (the others BatchNorm).

A legal combination must give BPTT's gradient (exactly for the affine HRU under RHEL, within RHEL's
own bias otherwise); an illegal one must be refused by ``hamecho.core.choices.check_compatible`` with a
``ValueError`` before anything runs. Equal, freshly built strategy objects must reuse compiled code.
"""
import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import pytest

import hamecho as he
import hamecho.physical
from hamecho.core.choices import Choices
from hamecho.tools.gradcheck import compare_gradients, random_problem

pytestmark = pytest.mark.usefixtures("x64")

GRADIENTS = {"rhel": he.RHEL(eps=1e-4), "rhel_one_sided": he.RHEL(eps=1e-5, estimator="one_sided"),
             "bptt": he.BPTT(), "bptt_checkpoint": he.BPTT(checkpoint_every=5)}
INTEGRATORS = {"default": None, "leapfrog": he.Leapfrog(), "affine": he.AffineLeapfrog(),
               "fixed_point": he.FixedPointLeapfrog(fraction_bits=50), "ideal_device": hamecho.physical.IdealDevice(),
               "simulated_device": hamecho.physical.SimulatedDevice()}
MEMORIES = {"none": None, "recompute": he.RecomputeBlocks(), "chunks": he.TimeChunks(7),
            "streaming": he.Streaming(5)}
DEVICES = ("ideal_device", "simulated_device")
COMBINATIONS = [(hru, *names) for hru in ("linear", "nonlinear")
                for names in itertools.product(GRADIENTS, INTEGRATORS, MEMORIES)
                if not (names[1] == "default" and names[2] != "none")]  # the default is Leapfrog on CPU


def illegal(hru, gradient, integrator, memory) -> bool:
    """What the rules say, written out independently of check_compatible."""
    bptt = gradient.startswith("bptt")
    return ((integrator == "affine" and hru != "linear")
            or (integrator in ("fixed_point", *DEVICES) and bptt)
            or (integrator in ("affine", "fixed_point", *DEVICES) and memory == "chunks")
            or (gradient == "bptt_checkpoint" and (integrator == "affine" or memory == "chunks"))
            or (memory == "streaming" and (bptt or integrator in ("affine", *DEVICES))))


def tolerance(hru, gradient, integrator) -> float:
    if gradient.startswith("bptt"):
        return 1e-12
    if integrator == "fixed_point":
        return 1e-4  # the grid's 2^-50 resolution, divided by ε, on top of RHEL's bias
    if gradient == "rhel_one_sided":
        return 1e-4  # O(ε) bias (on the affine HRU too)
    if integrator in DEVICES and hru == "linear":
        return 1e-8  # a device's two echoes are measured separately and subtracted: rounding (1e-16) / ε (1e-4)
    return 1e-9 if hru == "linear" else 1e-6  # exact for the affine HRU; O(ε²) otherwise


@pytest.fixture(scope="module")
def problems():
    out = {}
    for hru, norm in itertools.product(("linear", "nonlinear"), ("batch", "layer")):
        model, x, y = random_problem(hru=hru, blocks=1, hidden=5, state=3, length=16, batch=2, in_dim=2,
                                     classes=3, task="classification", output_step=1, step=0.3, seed=3,
                                     dtype=jnp.float64, norm=norm)
        out[hru, norm] = (model, x, y, he.value_and_grad(model, x, y, gradient=he.BPTT())[1])
    return out


@pytest.mark.parametrize("hru,gradient,integrator,memory", COMBINATIONS)
def test_combination(problems, hru, gradient, integrator, memory):
    model, x, y, reference = problems[hru, "layer" if memory == "streaming" else "batch"]
    choices = dict(gradient=GRADIENTS[gradient], integrator=INTEGRATORS[integrator], memory=MEMORIES[memory])
    if illegal(hru, gradient, integrator, memory):
        with pytest.raises(ValueError):
            he.value_and_grad(model, x, y, **choices)
        return
    _, grads = he.value_and_grad(model, x, y, **choices)
    rows = compare_gradients(grads, reference)
    assert len(rows) == len(jax.tree_util.tree_leaves(eqx.filter(model, he.trainable(model))))
    worst = max(row["rel_err"] for row in rows)
    assert worst < tolerance(hru, gradient, integrator), (worst, rows)


def test_every_illegal_combination_is_refused_by_the_one_check():
    """The rules written above agree with check_compatible (no model involved)."""
    from hamecho.core.choices import integrator_for
    from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN

    hams = {"linear": LINEAR_HAMILTONIAN, "nonlinear": NONLINEAR_HAMILTONIAN}
    for hru, gradient, integrator, memory in COMBINATIONS:
        try:
            choices = Choices(gradient=GRADIENTS[gradient], integrator=INTEGRATORS[integrator],
                              memory=MEMORIES[memory])
            integrator_for(hams[hru], choices, initial_state=memory == "chunks")
        except ValueError:
            refused = True
        else:
            refused = False
        assert refused == illegal(hru, gradient, integrator, memory), (hru, gradient, integrator, memory)


def test_streaming_refuses_batch_norm(problems):
    model, x, y, _ = problems["linear", "batch"]
    with pytest.raises(ValueError, match="needs HSSM\\(norm='layer'\\)"):
        he.value_and_grad(model, x, y, memory=he.Streaming(5))


def _compilations(call) -> list[str]:
    """The JAX compilation events ``call()`` triggers."""
    events = []
    listener = lambda event, duration, **kwargs: events.append(event) if "compile" in event else None
    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        jax.block_until_ready(call())
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
    return events


def test_equal_fresh_strategy_objects_compile_nothing_new(problems):
    model, x, y, _ = problems["nonlinear", "batch"]
    fresh = lambda eps: dict(gradient=he.RHEL(eps=eps), integrator=he.Leapfrog(dtype="float64"),
                             memory=he.TimeChunks(8))
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.05))[0])  # the first call compiles
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.05))[0]) == []
    assert _compilations(lambda: he.value_and_grad(model, x, y, eps=0.05, block_chunk=8, scan="sequential",
                                                   core_dtype="float64")[0]) == []  # the old keywords too
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.07))[0])  # other values compile
