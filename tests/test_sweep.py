"""Sweeps: the local process pool, Ray, restart/idempotence, a killed worker, hyperparameter search."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hamecho import cli
from hamecho.cli.sweep import search_from_args
from hamecho.tools.report import write_report
from hamecho.tools.sweep import build_sweep, combinations, load_sweep, search_grid, select
from hamecho.training import RESULT_FORMAT, load_config, read_result, run_one, run_paths

TINY = """\
name = "tiny"
[data]
name = "synthetic/first5"
length = 24
num_samples = 64
[model]
hru = "linear"
hidden = 8
state = 4
blocks = 2
step = 0.1
[train]
lr = 1e-2
batch_size = 8
steps = 6
eval_every = 3
early_stopping = false
dtype = "float64"
seeds = [1, 2]
"""


@pytest.fixture
def tiny_config(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def timing_free(result):
    drop = ("elapsed_s", "step_ms")
    return [{k: v for k, v in h.items() if k not in drop} for h in result["history"]]


def checkpoint_arrays(path):
    with np.load(path) as archive:
        return [archive[k] for k in sorted(archive.files) if k != "meta"]


def assert_same_run(a_json, b_json):
    """Two runs of the same (config, algo, seed) reached the same model and metrics."""
    a, b = read_result(a_json), read_result(b_json)
    assert timing_free(a) == timing_free(b)
    assert (a["test_metric"], a["best_val_metric"], a["steps"]) == (b["test_metric"], b["best_val_metric"], b["steps"])
    for x, y in zip(checkpoint_arrays(a_json.with_name(a_json.stem + ".ckpt.npz")),
                    checkpoint_arrays(b_json.with_name(b_json.stem + ".ckpt.npz")), strict=True):
        np.testing.assert_array_equal(x, y)


# --- local pool ---------------------------------------------------------------------------------------

def test_local_pool_runs_a_2x2_sweep_without_ray_and_skips_it_on_rerun(tiny_config, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    out = tmp_path / "out"
    argv = ["sweep", "--config", str(tiny_config), "--algos", "rhel", "bptt", "--out", str(out), "--workers", "2"]
    assert cli.main(argv) == 0
    results = sorted(out.rglob("seed*.json"))
    assert [p.relative_to(out).as_posix() for p in results] == [
        "tiny/bptt/seed1.json", "tiny/bptt/seed2.json", "tiny/rhel/seed1.json", "tiny/rhel/seed2.json"]
    assert all(read_result(p)["steps"] == 6 for p in results)
    stamps = [p.stat().st_mtime_ns for p in results]

    capsys.readouterr()
    assert cli.main(argv) == 0  # idempotent: nothing is run again
    assert "4 runs, 4 already done, 0 to run" in capsys.readouterr().out
    assert [p.stat().st_mtime_ns for p in results] == stamps

    # the layout is the one `hamecho report` reads
    write_report(out, plots=False)
    assert "| synthetic/first5 | linear | 2 |" in (out / "report.md").read_text()  # 2 seeds paired

    # --ray without Ray: a clear message, not a traceback
    assert cli.main(argv + ["--ray"]) == 2
    assert "pip install 'hamecho[ray]'" in capsys.readouterr().err


def test_local_pool_retries_a_killed_worker_and_gets_the_same_result(tiny_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HAMECHO_SWEEP_KILL_AT_STEP", "3")  # the worker dies right after its step-3 checkpoint
    out = tmp_path / "killed"
    assert cli.main(["sweep", "--config", str(tiny_config), "--algos", "rhel", "--seeds", "1",
                     "--out", str(out), "--workers", "1"]) == 0
    killed = out / "tiny" / "rhel" / "seed1.json"
    assert read_result(killed)["sessions"] == 2  # it was interrupted once and resumed from the checkpoint
    monkeypatch.delenv("HAMECHO_SWEEP_KILL_AT_STEP")
    clean = run_one(load_config(tiny_config), "rhel", 1, tmp_path / "clean", progress=False)
    assert read_result(clean)["sessions"] == 1
    assert_same_run(killed, clean)


# --- Ray ------------------------------------------------------------------------------------------------

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None, reason="Ray is not installed")


def hamecho_cli(*args, env=None):
    """``hamecho ARGS`` in a fresh interpreter (Ray starts and stops its local instance there)."""
    return subprocess.run([sys.executable, "-m", "hamecho.cli", *args], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@needs_ray
def test_ray_runs_a_2x2_sweep_on_a_local_two_cpu_instance(tiny_config, tmp_path):
    out = tmp_path / "ray"
    done = hamecho_cli("sweep", "--config", str(tiny_config), "--algos", "rhel", "bptt", "--out", str(out),
                       "--ray", "--workers", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "4 finished, 0 skipped, 0 failed" in done.stdout
    assert len(list(out.rglob("seed*.json"))) == 4
    # same runs as in-process training, bit for bit
    assert_same_run(out / "tiny" / "bptt" / "seed2.json",
                    run_one(load_config(tiny_config), "bptt", 2, tmp_path / "local", progress=False))


@needs_ray
@pytest.mark.slow  # ~1 min of CI: Ray's own retry path; the local pool's retry test and the Ray 2x2 sweep stay in CI
def test_ray_retries_a_killed_worker_and_gets_the_same_result(tiny_config, tmp_path):
    out = tmp_path / "ray"
    done = hamecho_cli("sweep", "--config", str(tiny_config), "--algos", "rhel", "--seeds", "1", "--out", str(out),
                       "--ray", "--workers", "2", env={"HAMECHO_SWEEP_KILL_AT_STEP": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    killed = out / "tiny" / "rhel" / "seed1.json"
    assert read_result(killed)["sessions"] == 2
    assert_same_run(killed, run_one(load_config(tiny_config), "rhel", 1, tmp_path / "clean", progress=False))


# --- hyperparameter search -----------------------------------------------------------------------------

def fake_result(path: Path, val: float, test: float):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"format": RESULT_FORMAT, "metric": "accuracy", "best_val_metric": val,
                                "test_metric": test}))


def test_search_selects_on_validation_never_on_test(tiny_config, tmp_path):
    sweep = build_sweep(configs=[str(tiny_config)], algos=["rhel"], out=str(tmp_path / "s"),
                        search={"train.lr": [1e-2, 1e-3], "model.hidden": [8, 16]})
    assert len(sweep.runs) == 4 * 2  # 4 combinations x 2 seeds
    names = {spec.config().name for spec in sweep.runs}
    assert "tiny/search/hidden-16_lr-0.001" in names and len(names) == 4
    # validation and test disagree on purpose: the best validation mean must win
    vals = {"hidden-8_lr-0.01": (0.5, 0.9), "hidden-8_lr-0.001": (0.7, 0.1), "hidden-16_lr-0.01": (0.6, 0.8),
            "hidden-16_lr-0.001": (0.2, 1.0)}
    for spec in sweep.runs:
        config = spec.config()
        val, test = vals[config.name.rsplit("/", 1)[1]]
        fake_result(run_paths(config, "rhel", spec.seed)[0], val + 0.01 * spec.seed, test)
    (selection,) = select(sweep)
    ranking = selection["algos"]["rhel"]["ranking"]
    assert selection["algos"]["rhel"]["selected"]["label"] == "hidden-8_lr-0.001"
    assert [r["label"] for r in ranking] == ["hidden-8_lr-0.001", "hidden-16_lr-0.01", "hidden-8_lr-0.01",
                                             "hidden-16_lr-0.001"]
    assert ranking[0]["val_mean"] == pytest.approx(0.715) and ranking[0]["seeds_done"] == 2
    stored = json.loads((tmp_path / "s" / "tiny" / "search.json").read_text())
    assert stored["algos"]["rhel"]["selected"]["settings"] == {"model.hidden": 8, "train.lr": 0.001}


def test_search_end_to_end_and_the_paper_grid(tiny_config, tmp_path, capsys):
    out = tmp_path / "search"
    assert cli.main(["sweep", "--config", str(tiny_config), "--algos", "bptt", "--seeds", "1", "--out", str(out),
                     "--workers", "2", "--search", "train.lr=1e-2,1e-1"]) == 0
    printed = capsys.readouterr().out
    assert "search tiny (accuracy, ranked on validation" in printed
    stored = json.loads((out / "tiny" / "search.json").read_text())
    ranking = stored["algos"]["bptt"]["ranking"]
    assert {r["label"] for r in ranking} == {"lr-0.01", "lr-0.1"}
    assert ranking[0]["val_mean"] >= ranking[1]["val_mean"]
    assert stored["algos"]["bptt"]["selected"]["label"] == ranking[0]["label"]
    assert search_from_args(["paper"]) == "paper"
    assert len(combinations(search_grid("paper", "test"))) == 162


# --- input errors ----------------------------------------------------------------------------------------

def test_sweep_file_and_arguments_are_validated(tiny_config, tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('configs = ["tiny.toml"]\nalgos = ["rhel"]\nseeds = [4]\n[set]\n"train.steps" = 3\n')
    sweep = load_sweep(spec)  # configs resolve relative to the sweep file
    assert [(s.algo, s.seed) for s in sweep.runs] == [("rhel", 4)] and sweep.runs[0].config().train.steps == 3

    spec.write_text('configs = ["tiny.toml"]\nworker = 2\n')
    with pytest.raises(ValueError, match=r"spec.toml: unknown key\(s\) 'worker'"):
        load_sweep(spec)
    with pytest.raises(ValueError, match="no file matches"):
        build_sweep(configs=[str(tmp_path / "nothing*.toml")])
    with pytest.raises(ValueError, match="algos must be"):
        build_sweep(configs=[str(tiny_config)], algos=["sgd"])
    with pytest.raises(ValueError, match="must be section.key"):
        build_sweep(configs=[str(tiny_config)], search={"lr": [1e-3]})
    with pytest.raises(ValueError, match="search combination hidden-0 .*hidden"):
        build_sweep(configs=[str(tiny_config)], search={"model.hidden": [0]})
    with pytest.raises(ValueError, match="SECTION.KEY=V1,V2"):
        search_from_args(["train.lr"])
