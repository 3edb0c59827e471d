"""``hamecho robustness`` (issue #15): one real sweep point, the outputs from a known result, the command line."""
import json

import equinox as eqx
import jax
import pytest

import hamecho as he
from hamecho.cli import build_parser, main
from hamecho.tools import robustness as rb

pytestmark = pytest.mark.usefixtures("x64")

TINY = rb.GradientSetup(length=12, batch=2, hidden=4, state=2, device_seeds=(0,))


def test_an_undamped_device_point_agrees_with_both_references():
    """damping 0 on a SimulatedDevice is the ideal leapfrog: cosine 1 against BPTT of the ideal model and of
    the (zero-)damped one, norm ratio 1; the nudge the noise is compared with is positive."""
    rows = rb.gradient_sweep("damping", problems=("linear",), levels=(0.0,), setup=TINY, lengths=(12,))
    assert len(rows) == 1
    row = rows[0]
    assert row["cosine"] > 1 - 1e-12 and row["cosine_damped"] > 1 - 1e-12 and row["cosine_all"] > 1 - 1e-12
    assert row["norm_ratio"] == pytest.approx(1.0, abs=1e-10)
    assert row["gamma_L"] == 0.0 and row["nudge_rms"] > 0


def test_a_learning_rule_plugs_into_the_sweep():
    """rules.LearningRule is the seam for rules other than the default RHEL: the sweep computes its gradient
    with the device in the integrator's place and records its name. One-sided RHEL on the linear HRU has an
    O(ε) bias (the energy gradients are quadratic in the state), two-sided none: at 52 bits the first is off
    BPTT at ε = 10, the second is not."""
    one_sided = rb.LearningRule("rhel one-sided", lambda eps: he.RHEL(eps=eps, estimator="one_sided"))
    rows = rb.gradient_sweep("bits", problems=("linear",), levels=(52,), setup=TINY, rule=one_sided)
    rows += rb.gradient_sweep("bits", problems=("linear",), levels=(52,), setup=TINY)
    assert [row["rule"] for row in rows] == ["rhel one-sided", "rhel"]
    assert rows[0]["cosine"] < 1 - 1e-4 and rows[1]["cosine"] > 1 - 1e-9
    assert [entry["rule"] for entry in rb.summarize_gradients(rows)] == ["rhel one-sided", "rhel"]


def _key_paths(model, mask) -> set[str]:
    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, mask))[0]
    return {jax.tree_util.keystr(path) for path, _ in leaves}


@pytest.mark.parametrize("problem", ["nonlinear", "hssm2"])
def test_selectors_pick_the_arrays_the_key_paths_name(problem):
    """The selectors (attributes of the model, loud on a rename) pick what the key-path strings of the first
    version picked: every HRU's θ and B; all trainable arrays but the last core's C, D, GLU and the head."""
    model, _, _ = rb.make_problem(problem, TINY)
    every = _key_paths(model, he.trainable(model))
    core = _key_paths(model, rb.selection(model, rb.core_arrays))
    assert core == {p for p in every if ".hru.theta" in p or p.endswith(".hru.B")} and core
    last = len(model.blocks) - 1
    after = (f".blocks[{last}].hru.C", f".blocks[{last}].hru.D", f".blocks[{last}].glu", ".head")
    through_echo = _key_paths(eqx.filter(model, he.trainable(model)), rb.echo_dependent(model))  # optimiser's tree
    assert through_echo == {p for p in every if not p.startswith(after)} and through_echo != every
    assert rb.selection(model, None) == he.trainable(model)
    with pytest.raises(AttributeError):
        rb.selection(model, lambda m: [b.hru.theta_renamed for b in m.blocks])


def _known_result() -> rb.RobustnessResult:
    summary = []
    for knob, levels in (("noise", (0.0, 1e-3)), ("bits", (8, 52)), ("repeats", (1, 4))):
        for level, cosine in zip(levels, (0.25, 0.75)):
            summary.append({"problem": "linear", "knob": knob, "eps": 10.0, "length": 12, "level": level,
                            "seeds": 2, "nudge_rms": 1e-3, "cosine": cosine, "cosine_std": 0.1,
                            "norm_ratio": 2.0, "cosine_all": cosine})
    summary.append({"problem": "nonlinear", "knob": "damping", "eps": 10.0, "length": 12, "level": 0.5, "seeds": 1,
                    "nudge_rms": 1e-3, "cosine": -0.5, "norm_ratio": 3.0, "cosine_all": 0.1, "cosine_damped": -0.25,
                    "norm_ratio_damped": 4.0, "gamma_L": 6.0, "gamma_T": 0.6})
    training = {"setup": {"dataset": "synthetic/first5", "blocks": 1, "hru": "linear", "hidden": 4, "state": 2,
                          "steps": 3, "lr": 0.01, "batch": 8, "eps": 10.0, "seeds": [0, 1]},
                "chance": 0.25, "test_cases": 10, "nudge_rms_at_init": 3e-4,
                "summary": [{"label": "ideal", "test_accuracy": 0.9, "test_accuracy_std": 0.05,
                             "test_accuracy_ideal": 0.9, "test_accuracy_ideal_std": 0.05, "final_loss": 0.3,
                             "final_loss_std": 0.01}]}
    return rb.RobustnessResult(gradient_setup={"batch": 2, "length": 12, "hidden": 4, "state": 2, "step": 0.1,
                                               "eps": 10.0},
                               gradient_summary=summary, training=training, command="hamecho robustness --quick")


def test_outputs_of_a_known_result(tmp_path):
    written = rb.write_outputs(_known_result(), tmp_path / "out", tmp_path / "img")
    names = sorted(p.name for p in written)
    assert names == ["physical_bits.png", "physical_damping.png", "physical_noise.png", "physical_repeats.png",
                     "physical_training.png", "robustness.json", "robustness.md"]
    for path in written:
        assert path.stat().st_size > 500
    text = (tmp_path / "out" / "robustness.md").read_text()
    assert "    hamecho robustness --quick" in text
    assert "| 0.001 | 0.750 ± 0.100 | 2 | 1 |" in text  # noise 1e-3: cosine, norm ratio, level / nudge
    assert "| nonlinear | 12 | 0.5 | 6 | 0.6 | -0.500 | 3 | -0.250 | 4 |" in text
    assert "| ideal | 0.900 ± 0.050 | 0.900 ± 0.050 | 0.300 ± 0.010 |" in text
    assert "Nudge ε·|g| (RMS, first batch, at initialisation): 0.0003." in text
    stored = json.loads((tmp_path / "out" / "robustness.json").read_text())
    assert stored["gradient_summary"][1]["cosine"] == 0.75 and stored["command"] == "hamecho robustness --quick"


def test_command_line():
    args = build_parser().parse_args(["robustness", "--knobs", "bits", "damping", "--problems", "linear",
                                      "--no-train", "--out", "some dir"])
    from hamecho.cli.robustness import command_line

    assert command_line(args) == ("hamecho robustness --knobs bits damping --problems linear --out 'some dir' "
                                  "--no-train")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["robustness", "--knobs", "temperature"])


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path, capsys):
    """Every knob, both measurements, all outputs (minutes: XLA compiles each device anew)."""
    assert main(["robustness", "--quick", "--out", str(tmp_path), "--no-progress"]) == 0
    assert len(list(tmp_path.glob("physical_*.png"))) == len(rb.KNOBS) + 1
    result = json.loads((tmp_path / "robustness.json").read_text())
    assert {e["knob"] for e in result["gradient_summary"]} == set(rb.KNOBS)
    assert len(result["training"]["runs"]) == 2
