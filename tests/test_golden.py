"""The redesign (#13) against golden outputs recorded before anything moved (tests/golden/record.py).

Every option combination that existed before is recomputed through the new strategy objects and
compared with golden.npz: loss, every gradient array, one Adam step with dropout and norm statistics (now
``hamecho.train_step``), ``retrace_error`` and ``predict``. Equality is bit for bit except where
``TOLERANCES`` lists a case, with the reason. The old keywords are checked to resolve to the very same
choices for each Hamiltonian (gradient, integrator, memory: the only static inputs of the computation),
so they run the same compiled code; one case per family also runs numerically through them (at
``hamecho.value_and_grad``, the one entry point besides ``train_step`` that still takes them, deprecated).
CI runs a subset of the numerical cases (``GRADIENTS_IN_CI``, ``STEP_IN_CI``); ``pytest -m slow`` the rest.
"""
import importlib.util
import json
from pathlib import Path

import jax
import numpy as np
import optax
import pytest

import hamecho as he
from hamecho.core.choices import Choices, integrator_for
from hamecho.core.hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN
from hamecho.nn.keywords import choices_from_keywords

pytestmark = pytest.mark.usefixtures("x64")

HERE = Path(__file__).parent / "golden"


def _load_recorder():
    """tests/golden/record.py, the recorder of the golden files (a script, imported by its path)."""
    spec = importlib.util.spec_from_file_location("golden_record", HERE / "record.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


record = _load_recorder()
CASES = json.loads((HERE / "golden.json").read_text())
# The same choices as strategy objects, as the recorder records them.
NEW = record.CHOICES
problem, arrays = record.problem, record.leaves

# Cases allowed to differ from the recording by at most 1e-15 relative, with the reason. Empty: every
# case is reproduced bit for bit.
TOLERANCES: dict[str, str] = {}


@pytest.fixture(scope="module")
def golden():
    with np.load(HERE / "golden.npz") as archive:
        return dict(archive)


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
    assert list(CASES) == record.case_names()
    assert {case: entry["options"] for case, entry in CASES.items()} == {
        f"{hru}/{name}": keywords for hru in record.HRUS for name, only, _, keywords, _ in record.CASES
        if only in (None, hru)}


def test_the_recorder_reproduces_the_stored_files_bit_for_bit(golden, tmp_path):
    """tests/golden/record.py runs on today's API: one case re-recorded into a temporary folder equals the
    stored arrays and index entry exactly (a step, a gradient, a retrace error and a prediction)."""
    case = "nonlinear/rhel_auto"  # in STEP_IN_CI and GRADIENTS_IN_CI: its functions are often compiled already
    arrays_, index = record.record(tmp_path, [case])
    assert index == {case: CASES[case]}
    stored = json.loads((tmp_path / "golden.json").read_text())
    assert stored == index
    with np.load(tmp_path / "golden.npz") as written:
        assert set(written) == set(arrays_) == {key for key in golden if key.startswith(case + "/")} | {
            "nonlinear/predict"}
        for key in written:
            assert written[key].dtype == golden[key].dtype and np.array_equal(written[key], golden[key]), key
    # --merge: the case replaced in a copy of the stored files, every other array kept (the same case again:
    # compiled already, so cheap); the files come out equal to the stored ones.
    merged_dir = tmp_path / "merged"
    merged_dir.mkdir()
    for name in ("golden.npz", "golden.json"):
        (merged_dir / name).write_bytes((HERE / name).read_bytes())
    record.record(merged_dir, [case], merge=True)
    assert json.loads((merged_dir / "golden.json").read_text()) == CASES
    with np.load(merged_dir / "golden.npz") as written:
        assert list(written) == list(golden)
        assert all(np.array_equal(written[key], golden[key]) for key in golden)


def resolved(choices, hru: str):
    ham = {"linear": LINEAR_HAMILTONIAN, "nonlinear": NONLINEAR_HAMILTONIAN}[hru]
    carries = choices.memory is not None and choices.memory.carries_state
    return choices.gradient, integrator_for(ham, choices, initial_state=carries), choices.memory


@pytest.mark.parametrize("case", sorted(CASES))
def test_old_keywords_resolve_to_the_new_choices(case):
    hru, name = case.split("/")
    assert resolved(choices_from_keywords(**CASES[case]["options"]), hru) == resolved(Choices(**NEW[name]), hru)


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
    if spelling == "old_keywords":
        with pytest.warns(DeprecationWarning, match="hamecho.value_and_grad"):
            he.nn.keywords.WARNED.clear()
            loss, grads = he.value_and_grad(model, x, y, **choices)
        choices = {"integrator": choices_from_keywords(**choices).integrator}
    else:
        loss, grads = he.value_and_grad(model, x, y, **choices)
    assert_same(case, "loss", loss, golden[f"{case}/loss"])
    leaves = arrays(grads)
    assert len(leaves) == entry["grads"]
    for i, leaf in enumerate(leaves):
        assert_same(case, f"grad {i}", leaf, golden[f"{case}/grad{i:03d}"])

    retrace = he.retrace_error(model.blocks[0].hru, record.retrace_input(entry["dtype"]),
                               integrator=choices.get("integrator"))
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
