"""The redesign (#13) against golden outputs recorded before anything moved (tests/golden/record.py).

Every option combination that existed before is recomputed through the new strategy objects and
compared with golden.npz: loss, every gradient array, one Adam step with dropout and norm statistics (now
``hamecho.train_step``), ``retrace_error`` and ``predict``. Equality is bit for bit except where
``TOLERANCES`` lists a case, with the reason. The old keywords are checked to resolve to the very same
choices for each Hamiltonian (gradient, integrator, memory: the only static inputs of the computation),
so they run the same compiled code; one case per family also runs numerically through them.
CI runs a subset of the numerical cases (``GRADIENTS_IN_CI``, ``STEP_IN_CI``); ``pytest -m slow`` the rest.
"""
import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.core.choices import integrator_for
from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN
from hamecho.keywords import choices_from

pytestmark = pytest.mark.usefixtures("x64")

HERE = Path(__file__).parent / "golden"
LENGTH, BATCH, IN_DIM, CLASSES = 23, 3, 3, 4
CASES = json.loads((HERE / "golden.json").read_text())

# The same choices as strategy objects (scan="auto" on CPU, where these were recorded, is Leapfrog).
NEW = {
    "bptt": dict(gradient=he.BPTT()),
    "bptt_checkpoint": dict(gradient=he.BPTT(checkpoint_every=7), integrator=he.Leapfrog()),
    "rhel_two_quadrature": dict(gradient=he.RHEL(eps=0.1, difference="quadrature")),
    "rhel_two_direct": dict(gradient=he.RHEL(eps=0.1, difference="direct")),
    "rhel_one_quadrature": dict(gradient=he.RHEL(eps=1e-3, estimator="one_sided", difference="quadrature")),
    "rhel_one_direct": dict(gradient=he.RHEL(eps=1e-3, estimator="one_sided", difference="direct")),
    "rhel_auto": dict(gradient=he.RHEL()),
    "bptt_parallel": dict(gradient=he.BPTT(), integrator=he.AffineLeapfrog()),
    "rhel_parallel": dict(integrator=he.AffineLeapfrog()),
    "rhel_f32_core_input": dict(integrator=he.Leapfrog(dtype="input")),
    "rhel_f32_core_float64": dict(integrator=he.Leapfrog(dtype="float64")),
    "bptt_f32_core_input": dict(gradient=he.BPTT(), integrator=he.Leapfrog(dtype="input")),
    "bptt_f32_core_float64": dict(gradient=he.BPTT(), integrator=he.Leapfrog(dtype="float64")),
    "rhel_fixed_point": dict(integrator=he.FixedPointLeapfrog(fraction_bits=40)),
    "rhel_fixed_point_one": dict(gradient=he.RHEL(eps=0.01, estimator="one_sided"),
                                 integrator=he.FixedPointLeapfrog(fraction_bits=40)),
    "bptt_recompute": dict(gradient=he.BPTT(), memory=he.RecomputeBlocks()),
    "rhel_recompute": dict(memory=he.RecomputeBlocks()),
    "bptt_block_chunk": dict(gradient=he.BPTT(), memory=he.TimeChunks(5)),
    "rhel_block_chunk": dict(memory=he.TimeChunks(5)),
}

# Cases allowed to differ from the recording by at most 1e-15 relative, with the reason. Empty: every
# case is reproduced bit for bit.
TOLERANCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def golden():
    with np.load(HERE / "golden.npz") as archive:
        return dict(archive)


def problem(hru: str, dtype: str):
    model = he.HSSM(in_dim=IN_DIM, out_dim=CLASSES, hidden=6, state=3, blocks=2, hru=hru,
                    step=0.3 if hru == "nonlinear" else 1e-4, dtype=dtype, key=jax.random.PRNGKey(7))
    x = jax.random.normal(jax.random.PRNGKey(8), (BATCH, LENGTH, IN_DIM), dtype)
    return model, x, jnp.array([0, 3, 1])


def arrays(tree) -> list[np.ndarray]:
    return [np.asarray(a) for a in jax.tree_util.tree_leaves(eqx.filter(tree, eqx.is_array))]


def assert_same(case: str, what: str, actual, expected):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, (case, what)
    if case in TOLERANCES:
        scale = max(float(np.max(np.abs(expected))), 1e-300)
        assert float(np.max(np.abs(actual - expected))) <= 1e-15 * scale, (case, what, TOLERANCES[case])
    else:
        assert np.array_equal(actual, expected), (case, what, float(np.max(np.abs(actual - expected))))


def test_every_recorded_case_has_a_new_spelling():
    assert {case.split("/")[1] for case in CASES} == set(NEW)


def resolved(choices, hru: str):
    ham = {"linear": LINEAR_HAMILTONIAN, "nonlinear": NONLINEAR_HAMILTONIAN}[hru]
    carries = getattr(choices.memory, "carries_state", False)
    return choices.gradient, integrator_for(ham, choices, initial_state=carries), choices.memory


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_keywords_resolve_to_the_new_choices(case):
    hru, name = case.split("/")
    assert resolved(choices_from(**CASES[case]["options"]), hru) == resolved(choices_from(**NEW[name]), hru)


# Through the old keywords numerically as well: one case of each kind of choice.
OLD_SPELLING = ("nonlinear/bptt_checkpoint", "linear/rhel_parallel", "nonlinear/rhel_one_direct",
                "nonlinear/rhel_fixed_point", "linear/rhel_block_chunk", "nonlinear/bptt_f32_core_input")
# In CI two of them (the others with -m slow): the old keywords resolve to the very same choices
# (test_old_keywords_resolve_to_the_new_choices, every case), hence the same compiled code.
OLD_SPELLING_IN_CI = ("nonlinear/bptt_checkpoint", "linear/rhel_block_chunk")
# The Adam step (a second compilation per case, with dropout) runs in CI for one case of each kind of choice;
# `pytest -m slow tests/test_golden.py` runs it for every case.
STEP_IN_CI = ("nonlinear/rhel_auto", "linear/bptt_parallel", "nonlinear/rhel_fixed_point_one",
              "nonlinear/rhel_block_chunk")
# The gradients run in CI for every nonlinear case (the non-affine HRU, where any change of arithmetic shows)
# and the linear cases that exist only for it (the parallel scan); every case with -m slow.
GRADIENTS_IN_CI = tuple(c for c in CASES if c.startswith("nonlinear/") or c.endswith("_parallel"))


def spelled(case: str, spelling: str):
    hru, name = case.split("/")
    entry = CASES[case]
    return entry, (entry["options"] if spelling == "old_keywords" else NEW[name])


@pytest.mark.parametrize("case,spelling", [
    (case, "strategy_objects") if case in GRADIENTS_IN_CI
    else pytest.param(case, "strategy_objects", marks=pytest.mark.slow) for case in sorted(CASES)]
    + [(case, "old_keywords") if case in OLD_SPELLING_IN_CI
       else pytest.param(case, "old_keywords", marks=pytest.mark.slow) for case in OLD_SPELLING])
def test_gradients_reproduce_golden(golden, case, spelling):
    entry, choices = spelled(case, spelling)
    model, x, y = problem(case.split("/")[0], entry["dtype"])
    loss, grads = he.value_and_grad(model, x, y, **choices)
    assert_same(case, "loss", loss, golden[f"{case}/loss"])
    leaves = arrays(grads)
    assert len(leaves) == entry["grads"]
    for i, leaf in enumerate(leaves):
        assert_same(case, f"grad {i}", leaf, golden[f"{case}/grad{i:03d}"])

    layer = model.blocks[0].hru
    u = jax.random.normal(jax.random.PRNGKey(9), (LENGTH, BATCH, 6), entry["dtype"])
    if spelling == "old_keywords":
        retrace = he.retrace_error(layer.hamiltonian, layer.core_parameters(), layer.drives(u),
                                   he.CoreOptions(**choices))
    else:
        retrace = he.retrace_error(layer, u, integrator=choices.get("integrator"))
    assert_same(case, "retrace", retrace, golden[f"{case}/retrace"])


@pytest.mark.parametrize("case", [case if case in STEP_IN_CI else pytest.param(case, marks=pytest.mark.slow)
                                  for case in sorted(CASES)])
def test_training_step_reproduces_golden(golden, case):
    entry, choices = spelled(case, "strategy_objects")
    model, x, y = problem(case.split("/")[0], entry["dtype"])
    optimizer = optax.adam(1e-2)
    stepped, _, step_loss = he.train_step(model, he.init_optimizer(optimizer, model), x, y, optimizer,
                                          key=jax.random.PRNGKey(3), **choices)
    assert_same(case, "step loss", step_loss, golden[f"{case}/step_loss"])
    for i, leaf in enumerate(arrays(stepped)):
        assert_same(case, f"step array {i}", leaf, golden[f"{case}/step{i:03d}"])


@pytest.mark.parametrize("hru", ["linear", "nonlinear"])
def test_predict_reproduces_golden(golden, hru):
    model, x, _ = problem(hru, "float64")
    with pytest.warns(UserWarning, match="never updated"):
        assert_same(hru, "predict", he.predict(model, x), golden[f"{hru}/predict"])
