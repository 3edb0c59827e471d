"""`hamecho report`: statistics over seeds, the paper's table layout, CSV and plots (from made-up results)."""
import csv
import json
import math

import numpy as np
import pytest

from hamecho import cli
from hamecho.tools.report import (
    collect,
    paired_differences,
    summarise,
    table_paper_layout,
    table_published,
    write_report,
)
from hamecho.training import RESULT_FORMAT


def result(config, dataset, model, algo, seed, test, *, task="classification", steps=100, losses=(1.0, 0.5)):
    metric = "accuracy" if task == "classification" else "mse"
    history = [{"step": 50 * (i + 1), "train_loss": loss, f"val_{metric}": test, "val_loss": loss,
                "step_ms": 10.0 + i} for i, loss in enumerate(losses)]
    return {"format": RESULT_FORMAT, "config_name": config, "dataset": dataset, "model": model, "algo": algo,
            "seed": seed, "task": task, "metric": metric, "test_metric": test, "test_loss": 0.1,
            "best_val_metric": test, "best_step": steps, "steps": steps, "max_steps": steps, "stopped": "max_steps",
            "wall_time_s": 2.0 * seed, "sessions": 1, "peak_rss_mb": 500.0 + seed, "parameters": 10,
            "history": history, "config": {"train": {"dtype": "float64"}}, "fingerprint": f"fp-{config}"}


def write_results(root, results):
    for r in results:
        path = root / r["config_name"] / r["algo"] / f"seed{r['seed']}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(r))


@pytest.fixture
def runs(tmp_path):
    values = {  # (config, dataset, model) -> algo -> per-seed test accuracy
        ("linear/A", "uea/A", "linear"): {"bptt": [0.9, 0.8, 1.0], "rhel": [0.9, 0.7, 1.0]},
        ("linear/B", "uea/B", "linear"): {"bptt": [0.5, 0.6, 0.7], "rhel": [0.5, 0.6, 0.7]},
        ("nonlinear/A", "uea/A", "nonlinear"): {"bptt": [0.4, 0.4, 0.4], "rhel": [0.6, 0.6, 0.6]},
    }
    results = []
    for (config, dataset, model), per_algo in values.items():
        for algo, accs in per_algo.items():
            for seed, acc in zip((1, 2, 3), accs):
                results.append(result(config, dataset, model, algo, seed, acc,
                                      losses=(1.0, 0.5 if algo == "bptt" else 0.55)))
    write_results(tmp_path / "runs", results)
    (tmp_path / "runs" / "not-a-result.json").write_text('{"hello": 1}')
    (tmp_path / "runs" / "broken.json").write_text("{")
    return tmp_path / "runs"


def test_mean_and_population_std(runs):
    rows = {(r["config"], r["algo"]): r for r in summarise(collect(runs))}
    assert len(rows) == 6
    lin_a = rows[("linear/A", "bptt")]
    assert lin_a["n_seeds"] == 3 and lin_a["seeds"] == [1, 2, 3]
    assert lin_a["mean"] == pytest.approx(90.0)
    assert lin_a["std"] == pytest.approx(math.sqrt(200 / 3))       # population (ddof 0): 8.165, not 10
    assert lin_a["wall_s_mean"] == pytest.approx(4.0) and lin_a["peak_rss_mb_max"] == 503.0
    assert lin_a["step_ms_median"] == pytest.approx(10.5)
    assert rows[("nonlinear/A", "rhel")]["std"] == pytest.approx(0.0, abs=1e-12)


def test_paper_layout_with_average_column(runs):
    table = table_paper_layout(summarise(collect(runs)))
    lines = table.splitlines()
    assert "| Model | Alg. | A | B | Avg |" in lines
    # Avg = mean of the row's means ± mean of the row's stds (how the paper's Avg column is formed)
    lin_bptt_std_a = math.sqrt(200 / 3)
    lin_bptt_std_b = math.sqrt(200 / 3)
    avg = f"{(90.0 + 60.0) / 2:.1f} ±{(lin_bptt_std_a + lin_bptt_std_b) / 2:.1f}"
    assert f"| Lin | BPTT | 90.0 ±8.2 | 60.0 ±8.2 | {avg} |" in lines
    assert "| Lin | RHEL | 86.7 ±12.5 | 60.0 ±8.2 | 73.3 ±10.3 |" in lines
    # the nonlinear model ran on A only: no average for an incomplete row
    assert "| Nonlin | BPTT | 40.0 ±0.0 |  |  |" in lines
    assert lines.index("| Lin | BPTT | 90.0 ±8.2 | 60.0 ±8.2 | 75.0 ±8.2 |") < lines.index(
        "| Nonlin | RHEL | 60.0 ±0.0 |  |  |")


def test_paired_differences(runs):
    pairs = {p["config"]: p for p in paired_differences(collect(runs))}
    assert pairs["linear/A"]["mean"] == pytest.approx(-10 / 3)
    assert pairs["linear/A"]["max_abs"] == pytest.approx(10.0)
    assert pairs["linear/B"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert pairs["nonlinear/A"]["mean"] == pytest.approx(20.0)
    assert pairs["linear/A"]["max_loss_gap"] == pytest.approx(0.1)      # |0.55 - 0.5| / 0.5
    assert all(p["same_steps"] for p in pairs.values())


def test_regression_table_in_units_of_1e_2(tmp_path):
    results = [result("linear/ppg", "ppg", "linear", algo, seed, mse, task="regression")
               for algo, values in (("bptt", [0.09, 0.10]), ("rhel", [0.095, 0.095])) for seed, mse in
               zip((1, 2), values)]
    write_results(tmp_path, results)
    rows = summarise(collect(tmp_path))
    table = table_paper_layout(rows)
    assert "Test MSE (× 10⁻²; lower is better), mean ± population std over seeds: ppg" in table
    assert "| Lin | 9.50 ±0.50 | 9.50 ±0.00 |" in table
    published = table_published(rows)
    assert "| ppg | linear | BPTT | 9.5 ±0.5 | 9.1 ±1.1 | MSE ×1e-2 |" in published


def test_duplicate_seed_is_an_error(tmp_path):
    write_results(tmp_path / "a", [result("x", "uea/X", "linear", "rhel", 1, 0.5)])
    write_results(tmp_path / "b", [result("x", "uea/X", "linear", "rhel", 1, 0.6)])
    with pytest.raises(ValueError, match="seed 1 appears in two result files"):
        summarise(collect(tmp_path))


def test_write_report_files(runs, tmp_path):
    out = tmp_path / "report"
    report = write_report(runs, out)
    for name in ("report.md", "summary.csv", "learning_curves.png", "loss_curves.png", "rhel_vs_bptt.png"):
        assert (out / name).stat().st_size > 0
    with open(out / "summary.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 6
    first = next(r for r in rows if r["config"] == "linear/A" and r["algo"] == "bptt")
    assert float(first["mean"]) == pytest.approx(90.0) and first["seeds"] == "1 2 3"
    assert np.allclose([float(v) for v in first["values"].split()], [90.0, 80.0, 100.0])
    assert "## RHEL − BPTT, paired by seed" in report["markdown"]


def test_published_rows_for_paper_datasets(tmp_path):
    write_results(tmp_path, [result("linear/Heartbeat", "uea/Heartbeat", "linear", "rhel", s, 0.7) for s in (1, 2)])
    text = table_published(summarise(collect(tmp_path)))
    assert "| Heartbeat | linear | RHEL | 70.0 ±0.0 | 73.5 ±1.6 | accuracy % |" in text


def test_cli_report(runs, tmp_path, capsys):
    assert cli.main(["report", str(runs), "--out", str(tmp_path / "r"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "| Lin | BPTT | 90.0 ±8.2 | 60.0 ±8.2 | 75.0 ±8.2 |" in out and "summary.csv" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", str(empty)]) == 2
    assert "no result files" in capsys.readouterr().err


@pytest.mark.parametrize("model, algo, avg", [("linear", "bptt", (63.4, 3.9)), ("linear", "rhel", (62.9, 4.9)),
                                              ("nonlinear", "bptt", (58.8, 4.3)), ("nonlinear", "rhel", (57.8, 4.0))])
def test_published_average_column_is_mean_of_means_and_of_stds(model, algo, avg):
    """The Avg rule we use reproduces the paper's Avg column from its six per-dataset cells."""
    from hamecho.tools.report import PUBLISHED

    cells = [v for (dataset, m, a), v in PUBLISHED.items() if m == model and a == algo and dataset != "ppg"]
    assert len(cells) == 6
    assert np.mean([c[0] for c in cells]) == pytest.approx(avg[0], abs=0.051)
    assert np.mean([c[1] for c in cells]) == pytest.approx(avg[1], abs=0.051)
