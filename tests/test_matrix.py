"""Every (gradient × integrator × memory) combination against float64 BPTT, for both HRUs (issue #13).

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
from hamecho.core.choices import Choices
from hamecho.tools.gradcheck import compare_gradients, random_problem

pytestmark = pytest.mark.usefixtures("x64")

GRADIENTS = {"rhel": he.RHEL(eps=1e-4), "rhel_one_sided": he.RHEL(eps=1e-5, estimator="one_sided"),
             "bptt": he.BPTT(), "bptt_checkpoint": he.BPTT(checkpoint_every=5)}
INTEGRATORS = {"default": None, "leapfrog": he.Leapfrog(), "affine": he.AffineLeapfrog(),
               "fixed_point": he.FixedPointLeapfrog(fraction_bits=50)}
MEMORIES = {"none": None, "recompute": he.RecomputeBlocks(), "chunks": he.TimeChunks(7)}
COMBINATIONS = [(hru, *names) for hru in ("linear", "nonlinear")
                for names in itertools.product(GRADIENTS, INTEGRATORS, MEMORIES)
                if not (names[1] == "default" and names[2] != "none")]  # the default is Leapfrog on CPU


def illegal(hru, gradient, integrator, memory) -> bool:
    """What the rules say, written out independently of check_compatible."""
    bptt = gradient.startswith("bptt")
    return ((integrator == "affine" and hru != "linear")
            or (integrator == "fixed_point" and bptt)
            or (integrator in ("affine", "fixed_point") and memory == "chunks")
            or (gradient == "bptt_checkpoint" and (integrator == "affine" or memory == "chunks")))


def tolerance(hru, gradient, integrator) -> float:
    if gradient.startswith("bptt"):
        return 1e-12
    if integrator == "fixed_point":
        return 1e-4  # the grid's 2^-50 resolution, divided by ε, on top of RHEL's bias
    if gradient == "rhel_one_sided":
        return 1e-4  # O(ε) bias (on the affine HRU too)
    return 1e-9 if hru == "linear" else 1e-6  # exact for the affine HRU; O(ε²) otherwise


@pytest.fixture(scope="module")
def problems():
    out = {}
    for hru in ("linear", "nonlinear"):
        model, x, y = random_problem(hru=hru, blocks=1, hidden=5, state=3, length=16, batch=2, in_dim=2,
                                     classes=3, task="classification", output_step=1, step=0.3, seed=3,
                                     dtype=jnp.float64)
        out[hru] = (model, x, y, he.value_and_grad(model, x, y, gradient=he.BPTT())[1])
    return out


@pytest.mark.parametrize("hru,gradient,integrator,memory", COMBINATIONS)
def test_combination(problems, hru, gradient, integrator, memory):
    model, x, y, reference = problems[hru]
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
    model, x, y, _ = problems["nonlinear"]
    fresh = lambda eps: dict(gradient=he.RHEL(eps=eps), integrator=he.Leapfrog(dtype="float64"),
                             memory=he.TimeChunks(8))
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.05))[0])  # the first call compiles
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.05))[0]) == []
    assert _compilations(lambda: he.value_and_grad(model, x, y, eps=0.05, block_chunk=8, scan="sequential",
                                                   core_dtype="float64")[0]) == []  # the old keywords too
    assert _compilations(lambda: he.value_and_grad(model, x, y, **fresh(0.07))[0])  # other values compile
