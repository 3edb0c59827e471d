"""hamecho longrange (hamecho.tools.longrange): the θ learning rate, the memory estimate, resuming a run bit for
bit, and a tiny grid end to end through the CLI (one process per run, a rerun skipping finished runs, a run that
does not fit reported and not started). The generators themselves: tests/test_generated.py."""
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from hamecho.cli import main as cli_main
from hamecho.tools import longrange as lr

pytestmark = pytest.mark.usefixtures("isolated")    # run_cell switches x64 on; restored afterwards

TINY = lr.RunSettings(steps=2, batch=2, hidden=4, state=4, blocks=1, chunk=16, test_size=4)


def test_theta_learning_rate_falls_as_one_over_length_below_the_base_rate():
    assert lr.theta_learning_rate(20_000, 3e-3) == pytest.approx(3e-4)
    assert lr.theta_learning_rate(2_000, 3e-3) == pytest.approx(3e-3)
    assert lr.theta_learning_rate(100, 3e-3) == 3e-3          # capped at the base rate
    assert lr.theta_learning_rate(10**6, 1e-3, scale=None) == 1e-3


def test_the_cores_theta_moves_at_its_own_rate():
    """Adam's first step moves each parameter by its rate (times the sign of its gradient): θ by 6/L."""
    import equinox as eqx

    import hamecho as he
    from hamecho.nn.hssm import trainable

    model = he.HSSM(in_dim=2, out_dim=3, hidden=4, state=4, blocks=2, norm="layer", key=jax.random.PRNGKey(0))
    optimizer = lr.make_optimizer(model, 3e-3, 1e-4)
    params = eqx.filter(model, trainable(model))
    grads = jax.tree_util.tree_map(jnp.ones_like, params)
    updates, _ = optimizer.update(grads, optimizer.init(params), params)
    for block in updates.blocks:
        for leaf in jax.tree_util.tree_leaves(block.hru.theta):
            np.testing.assert_allclose(leaf, -1e-4, rtol=1e-3)
        np.testing.assert_allclose(block.hru.B, -3e-3, rtol=1e-3)
    np.testing.assert_allclose(updates.encoder.weight, -3e-3, rtol=1e-3)


def test_peak_estimate_is_a_line_through_the_measured_peaks_else_the_sizing_table():
    cell = lambda length, method="bptt": lr.Cell("first5", length, method, 0, TINY)    # noqa: E731
    row = lambda length, peak: {"cell": cell(length).to_json(), "length": length, "peak_bytes": peak}  # noqa: E731
    rows = [row(1_000, 1.0e9), row(10_000, 2.0e9)]
    assert lr.estimated_peak_bytes(rows, cell(100_000)) == pytest.approx(12.0e9)
    one = lr.estimated_peak_bytes(rows[:1], cell(100_000))
    assert one == pytest.approx(1.0e9 + lr.sizing_slope(cell(100_000)) * 99_000)
    assert lr.estimated_peak_bytes([], cell(100_000)) == pytest.approx(
        lr.SIZING_BASE_BYTES + lr.sizing_slope(cell(100_000)) * 100_000)
    # another method's or a longer length's peaks say nothing about this cell
    assert lr.estimated_peak_bytes(rows, cell(100_000, "streaming")) == pytest.approx(
        lr.SIZING_BASE_BYTES + lr.sizing_slope(cell(100_000, "streaming")) * 100_000)
    assert lr.estimated_peak_bytes(rows, cell(5_000)) == pytest.approx(
        1.0e9 + lr.sizing_slope(cell(5_000)) * 4_000)


def test_time_exponent_is_the_slope_of_the_log_log_fit():
    rows = [{"method": "streaming", "length": n, "s_per_step": 3e-5 * n ** 1.1} for n in (1_000, 10_000, 100_000)]
    assert lr.time_exponent(rows, "streaming") == pytest.approx(1.1)
    assert lr.time_exponent(rows[:1], "streaming") is None


def test_an_interrupted_run_resumes_bit_for_bit(tmp_path):
    """Curriculum (1 step at L/2) then 2 steps at L, checkpoint after every step; interrupted during the third
    step (after the checkpoint of the second), resumed with the Adam state: the same final loss and test loss as
    the run never interrupted."""
    settings = lr.RunSettings(**{**TINY.__dict__, "curriculum_steps": 1, "curriculum_factor": 2})
    cell = lr.Cell("first5", 40, "rhel", 0, settings)
    results = {}
    for name in ("straight", "interrupted"):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "cell.json").write_text(json.dumps(cell.to_json()))
        steps = []

        def stop_after_two(entry, steps=steps, name=name):
            steps += [entry] if entry.get("event") == "step" else []
            if name == "interrupted" and len(steps) == 3:
                raise KeyboardInterrupt

        if name == "interrupted":
            with pytest.raises(KeyboardInterrupt):
                lr.run_cell(folder, emit=stop_after_two, checkpoint_every_s=0.0)
            assert not (folder / "result.json").exists()
            resumed = []
            results[name] = lr.run_cell(folder, emit=resumed.append, checkpoint_every_s=0.0)
            assert resumed[0] == {"event": "resumed", "stage": 1, "step": 1}
            assert [e["step"] for e in resumed if e["event"] == "step"] == [1]
        else:
            results[name] = lr.run_cell(folder, emit=stop_after_two, checkpoint_every_s=0.0)
            assert [(e["length"], e["step"]) for e in steps] == [(20, 0), (40, 0), (40, 1)]
    straight, interrupted = results["straight"], results["interrupted"]
    assert interrupted["sessions"] == 2 and straight["sessions"] == 1
    assert interrupted["final_loss"] == straight["final_loss"] and math.isfinite(straight["final_loss"])
    assert interrupted["test_loss"] == straight["test_loss"]


def test_a_tiny_grid_end_to_end_then_a_rerun_skips_it_and_reports_what_does_not_fit(tmp_path, capsys):
    out = tmp_path / "grid"
    tiny = ["--steps", "2", "--batch", "2", "--hidden", "4", "--state", "4", "--blocks", "1", "--chunk", "16",
            "--test-size", "4", "--out", str(out), "--no-progress"]
    assert cli_main(["longrange", "--lengths", "48", "--methods", "streaming", "bptt_chunks", *tiny]) == 0
    first = json.loads((out / "longrange.json").read_text())["rows"]
    assert [(r["method"], r["status"]) for r in first] == [("streaming", "done"), ("bptt_chunks", "done")]
    for r in first:
        assert r["steps"] == 2 and r["s_per_step"] > 0 and r["peak_bytes"] > 2**20 and 0 <= r["test_metric"] <= 1
    # the same seed and model, the same gradient (RHEL = BPTT): the second step's loss agrees
    assert first[0]["final_loss"] == pytest.approx(first[1]["final_loss"], rel=1e-4)
    assert all((out / name).exists() for name in ("longrange.md", "metric.png", "peak.png", "time.png"))
    progress = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    steps = [e for e in progress if e.get("event") == "step"]
    assert [e["grid_steps_done"] for e in steps] == [1, 2, 3, 4] and {e["grid_steps"] for e in steps} == {4}
    assert steps[-1]["eta_s"] == 0 and steps[0]["eta_s"] > 0

    capsys.readouterr()
    assert cli_main(["longrange", "--lengths", "48", "1000000000", "--methods", "bptt_chunks",
                     "--memory-limit-gib", "2", *tiny]) == 0
    rows = json.loads((out / "longrange.json").read_text())["rows"]
    assert rows[0]["reused"] and rows[0]["train_s"] == first[1]["train_s"]
    assert rows[1]["status"] == "does not fit" and rows[1]["needs_bytes"] > 2 * 2**30
    assert not (out / "cells" / rows[1]["name"]).exists()
    assert "does not fit: needs ≈" in (out / "longrange.md").read_text()
    assert "does not fit: needs ≈" in capsys.readouterr().out


def test_the_model_options_reach_the_runs_and_leave_recorded_cell_names_alone(tmp_path):
    """--zero-head and --hru-output-norm build the HSSM with those options (a regression grid runs with them);
    at their defaults a cell's name is the one recorded before they existed (benchmarks/results/longrange)."""
    from pathlib import Path

    recorded = json.loads((Path(__file__).parents[1] / "benchmarks/results/longrange/first5-10k/longrange.json")
                          .read_text())["rows"][0]
    assert lr.Cell.from_json(recorded["cell"]).name == recorded["name"]
    options = lr.RunSettings(zero_head=True, hru_output_norm=True)
    cell = lr.Cell("ppg", 256, "streaming", 0, options)
    assert lr.Cell.from_json(cell.to_json()) == cell and cell.name != lr.Cell("ppg", 256, "streaming", 0).name
    source = type("Source", (), {"channels": 6, "out_dim": 1, "task": "regression", "output_step": 128})()
    model = lr._build_model(cell, source, jax.random.PRNGKey(0))
    assert all(block.hru_output_norm for block in model.blocks) and not np.any(np.asarray(model.head.weight))
    with pytest.raises(ValueError, match="hru_output_norm must be True or False"):
        lr.RunSettings(hru_output_norm=1)
    out = tmp_path / "grid"
    assert cli_main(["longrange", "--lengths", "256", "--tasks", "ppg", "--methods", "streaming", "--steps", "2",
                     "--batch", "2", "--hidden", "4", "--state", "4", "--blocks", "1", "--chunk", "64",
                     "--test-size", "4", "--zero-head", "--hru-output-norm", "--out", str(out),
                     "--no-progress"]) == 0
    row = json.loads((out / "longrange.json").read_text())["rows"][0]
    assert row["status"] == "done" and row["cell"]["settings"]["hru_output_norm"] is True
    assert 0 <= row["test_metric"] < 1


def test_the_default_memory_limit_is_what_is_available_now():
    import os

    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    assert 0 < lr.machine_memory_bytes() <= physical


def test_streamed_inference_equals_the_plain_pass():
    """he.predict(memory=he.Streaming(chunk)) (what the long-range evaluation uses, flat in L) gives the plain
    pass's outputs, classification and regression, with a chunk that does not divide L."""
    import hamecho as he

    key = jax.random.PRNGKey(3)
    x = jax.random.normal(jax.random.PRNGKey(4), (3, 50, 2))
    for task, extra in (("classification", {}), ("regression", {"output_step": 5})):
        model = he.HSSM(in_dim=2, out_dim=3, hidden=4, state=4, blocks=2, norm="layer", task=task, key=key, **extra)
        plain = he.predict(model, x)
        streamed = he.predict(model, x, memory=he.Streaming(16))
        assert streamed.shape == plain.shape
        np.testing.assert_allclose(np.asarray(streamed), np.asarray(plain), rtol=1e-5, atol=1e-5)


def test_the_initial_loss_is_log_classes_at_any_length_with_a_zero_head():
    """The lead of issue #25: undamped oscillators driven by noise grow like √L, so with the default head the
    initial logits (and loss) grow with L; zero_head=True starts at exactly log(classes) at every L."""
    import hamecho as he

    losses = {}
    for length in (100, 10_000):
        x = jnp.asarray(np.random.default_rng(0).normal(size=(4, length, 2)), jnp.float32)
        y = jnp.array([0, 1, 2, 3])
        for zero_head in (False, True):
            model = he.HSSM(in_dim=2, out_dim=4, hidden=8, state=4, blocks=2, norm="layer", zero_head=zero_head,
                            key=jax.random.PRNGKey(0))
            logits = he.predict(model, x, memory=he.Streaming(512))
            log_probs = jax.nn.log_softmax(logits, axis=-1)
            losses[length, zero_head] = float(-jnp.mean(log_probs[jnp.arange(4), y]))
    assert losses[100, True] == pytest.approx(np.log(4), abs=1e-6)
    assert losses[10_000, True] == pytest.approx(np.log(4), abs=1e-6)
    assert losses[10_000, False] > losses[100, False]      # the default head: the loss grows with L


def test_hru_output_norm_bounds_the_head_input_at_any_length():
    """hru_output_norm=True normalises each HRU output per step before the GELU: the regression head's input
    (root mean square over the last steps, noise-driven inputs) stays O(1) whatever L, where without it it is
    an order of magnitude larger already at initialisation (and unbounded once training detunes the
    oscillators: the saturated tanh of docs/longrange.md). Streaming and RHEL with it: the next test."""
    import hamecho as he

    def head_input(model, x):
        h = model.encode(x)
        for block in model.blocks:
            h, _ = block(h)
        return float(jnp.sqrt(jnp.mean(jnp.square(h[-50:]))))

    sizes = {}
    for length in (100, 10_000):
        x = jnp.asarray(np.random.default_rng(1).normal(size=(4, length, 2)), jnp.float32)
        for flag in (False, True):
            model = he.HSSM(in_dim=2, out_dim=1, hidden=8, state=4, blocks=2, norm="layer", task="regression",
                            output_step=length, hru_output_norm=flag, key=jax.random.PRNGKey(0))
            sizes[length, flag] = head_input(model, x)
    for length in (100, 10_000):
        assert sizes[length, True] < 2.0 < sizes[length, False] / 5
    assert sizes[10_000, True] == pytest.approx(sizes[100, True], rel=0.25)


def test_hru_output_norm_streams_and_keeps_rhel_exact():
    """With hru_output_norm: Streaming reproduces the plain pass and RHEL's gradient (plain and streamed)
    equals BPTT's (float64, linear HRU: exact for any ε)."""
    import hamecho as he

    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        x = jnp.asarray(np.random.default_rng(2).normal(size=(3, 40, 2)))
        y = jnp.asarray(np.random.default_rng(3).uniform(-0.5, 0.5, size=(3, 8, 1)))
        model = he.HSSM(in_dim=2, out_dim=1, hidden=4, state=4, blocks=2, norm="layer", task="regression",
                        output_step=5, hru_output_norm=True, dtype=jnp.float64, key=jax.random.PRNGKey(5))
        np.testing.assert_allclose(np.asarray(he.predict(model, x, memory=he.Streaming(16))),
                                   np.asarray(he.predict(model, x)), rtol=1e-10, atol=1e-12)
        loss_bptt, grads_bptt = he.value_and_grad(model, x, y, gradient=he.BPTT())
        for memory in (None, he.Streaming(16)):
            loss_rhel, grads_rhel = he.value_and_grad(model, x, y, gradient=he.RHEL(eps=0.1), memory=memory)
            assert float(loss_rhel) == pytest.approx(float(loss_bptt), rel=1e-10)
            for a, b in zip(jax.tree_util.tree_leaves(grads_rhel), jax.tree_util.tree_leaves(grads_bptt)):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-10)
    finally:
        jax.config.update("jax_enable_x64", old)
