"""Tables and plots from the result files of ``hamecho train`` (the library of ``hamecho report RUNS_DIR``).

Results are grouped by configuration and algorithm; over the seeds of a group we report the mean and
the population standard deviation (``numpy.std``, ddof = 0). Tables, in the layout of the paper:

* Table 1 layout (classification): rows model × algorithm, one column per dataset, test accuracy in
  % as ``mean ±std``; with two or more datasets an ``Avg`` column is the mean of the row's means ±
  the mean of its standard deviations (how the paper's Avg column is formed: e.g. 63.4 ±3.9 for the
  linear BPTT row is the mean of its six means ± the mean of its six stds).
* Table 2 layout (regression): rows model, columns BPTT and RHEL per dataset, test MSE × 10⁻².
* A run table: dataset, model, algorithm, seeds, test metric, steps, wall time and peak memory.
* Paired differences RHEL − BPTT over the seeds both algorithms ran (same seeds → same splits and
  same initial model).

Outputs in OUT (default RUNS_DIR): ``report.md``, ``summary.csv``, ``learning_curves.png``,
``loss_curves.png`` and ``rhel_vs_bptt.png``.
"""
from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..training import RESULT_FORMAT, read_result

__all__ = ["collect", "summarise", "paired_differences", "table_paper_layout", "table_runs", "write_report",
           "PUBLISHED"]

MODEL_ORDER = {"linear": 0, "nonlinear": 1}
ALGO_ORDER = {"bptt": 0, "rhel": 1}
MODEL_LABEL = {"linear": "Lin", "nonlinear": "Nonlin"}
ALGO_LABEL = {"bptt": "BPTT", "rhel": "RHEL"}

# Published values (rhel-paper-notes §6.4): Table 1 test accuracy % and Table 2 PPG test MSE × 1e-2,
# mean and std over 5 seeds. Keys: (dataset, model, algo).
PUBLISHED = {
    ("uea/EigenWorms", "linear", "bptt"): (78.3, 7.5), ("uea/EigenWorms", "linear", "rhel"): (75.0, 9.9),
    ("uea/EigenWorms", "nonlinear", "bptt"): (51.1, 7.2), ("uea/EigenWorms", "nonlinear", "rhel"): (50.6, 6.7),
    ("uea/SelfRegulationSCP1", "linear", "bptt"): (86.4, 1.8),
    ("uea/SelfRegulationSCP1", "linear", "rhel"): (86.1, 2.9),
    ("uea/SelfRegulationSCP1", "nonlinear", "bptt"): (86.8, 3.2),
    ("uea/SelfRegulationSCP1", "nonlinear", "rhel"): (85.6, 4.4),
    ("uea/SelfRegulationSCP2", "linear", "bptt"): (63.9, 7.3),
    ("uea/SelfRegulationSCP2", "linear", "rhel"): (61.4, 9.4),
    ("uea/SelfRegulationSCP2", "nonlinear", "bptt"): (54.0, 4.9),
    ("uea/SelfRegulationSCP2", "nonlinear", "rhel"): (54.0, 2.0),
    ("uea/EthanolConcentration", "linear", "bptt"): (29.9, 0.6),
    ("uea/EthanolConcentration", "linear", "rhel"): (29.9, 0.6),
    ("uea/EthanolConcentration", "nonlinear", "bptt"): (29.9, 0.6),
    ("uea/EthanolConcentration", "nonlinear", "rhel"): (29.9, 0.6),
    ("uea/Heartbeat", "linear", "bptt"): (73.9, 0.6), ("uea/Heartbeat", "linear", "rhel"): (73.5, 1.6),
    ("uea/Heartbeat", "nonlinear", "bptt"): (74.5, 2.4), ("uea/Heartbeat", "nonlinear", "rhel"): (73.9, 4.3),
    ("uea/MotorImagery", "linear", "bptt"): (48.1, 5.7), ("uea/MotorImagery", "linear", "rhel"): (51.6, 5.0),
    ("uea/MotorImagery", "nonlinear", "bptt"): (56.5, 7.6), ("uea/MotorImagery", "nonlinear", "rhel"): (53.0, 5.7),
    ("ppg", "linear", "bptt"): (9.1, 1.1), ("ppg", "linear", "rhel"): (9.5, 1.0),
    ("ppg", "nonlinear", "bptt"): (7.8, 0.5), ("ppg", "nonlinear", "rhel"): (8.4, 0.5),
}


# --- collecting and summarising ----------------------------------------------------------------------

def collect(runs_dir: str | Path) -> list[dict]:
    """Every result JSON under ``runs_dir`` (recursively); other JSON files are ignored."""
    root = Path(runs_dir)
    if not root.is_dir():
        raise ValueError(f"runs folder {root} does not exist")
    results = []
    for path in sorted(root.rglob("*.json")):
        try:
            with open(path, encoding="utf-8") as handle:
                head = json.load(handle)
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(head, dict) and head.get("format") == RESULT_FORMAT:
            results.append(read_result(path) | {"path": str(path)})
    return results


def _scale(task: str) -> float:
    """Accuracy in %, MSE in units of 1e-2 (as the paper's tables)."""
    return 100.0


def dataset_label(name: str) -> str:
    return name.split("/", 1)[1] if "/" in name and not name.startswith("synthetic/") else name


def summarise(results: list[dict]) -> list[dict]:
    """One row per (configuration, algorithm): mean and population std over seeds, and run statistics."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        groups[(r["config_name"], r["algo"])].append(r)
    rows = []
    for (config_name, algo), runs in groups.items():
        runs = sorted(runs, key=lambda r: r["seed"])
        seeds = [r["seed"] for r in runs]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"{config_name} {algo}: seed {max(seeds, key=seeds.count)} appears in two result files "
                             f"({', '.join(r['path'] for r in runs if seeds.count(r['seed']) > 1)})")
        first = runs[0]
        values = np.array([np.nan if r["test_metric"] is None else r["test_metric"] for r in runs], dtype=float)
        scale = _scale(first["task"])
        rows.append({
            "config": config_name, "dataset": first["dataset"], "model": first["model"], "algo": algo,
            "task": first["task"], "metric": first["metric"], "n_seeds": len(runs), "seeds": seeds,
            "values": (values * scale).tolist(), "mean": float(np.mean(values) * scale),
            "std": float(np.std(values) * scale),
            "steps_mean": float(np.mean([r["steps"] for r in runs])),
            "steps_min": int(min(r["steps"] for r in runs)), "steps_max": int(max(r["steps"] for r in runs)),
            "wall_s_mean": float(np.mean([r["wall_time_s"] for r in runs])),
            "wall_s_total": float(np.sum([r["wall_time_s"] for r in runs])),
            "step_ms_median": _median_step_ms(runs),
            "peak_rss_mb_max": float(max(r.get("peak_rss_mb") or 0.0 for r in runs)),
            "parameters": first.get("parameters"), "dtype": first["config"]["train"]["dtype"],
            "fingerprints": sorted({r["fingerprint"] for r in runs}),
            "stopped": sorted({r["stopped"] for r in runs}),
        })
    rows.sort(key=lambda r: (r["dataset"], r["config"], MODEL_ORDER.get(r["model"], 9), ALGO_ORDER.get(r["algo"], 9)))
    return rows


def _median_step_ms(runs) -> float | None:
    times = [h["step_ms"] for r in runs for h in r["history"] if h.get("step_ms")]
    return float(np.median(times)) if times else None


def paired_differences(results: list[dict]) -> list[dict]:
    """Per configuration: RHEL − BPTT test metric over the seeds both ran (scaled like the tables)."""
    by_config: dict[str, dict[str, dict[int, dict]]] = defaultdict(lambda: defaultdict(dict))
    for r in results:
        by_config[r["config_name"]][r["algo"]][r["seed"]] = r
    out = []
    for config_name, algos in sorted(by_config.items()):
        if "rhel" not in algos or "bptt" not in algos:
            continue
        seeds = sorted(set(algos["rhel"]) & set(algos["bptt"]))
        pairs = [(algos["rhel"][s], algos["bptt"][s]) for s in seeds]
        pairs = [(a, b) for a, b in pairs if a["test_metric"] is not None and b["test_metric"] is not None]
        if not pairs:
            continue
        first = pairs[0][0]
        scale = _scale(first["task"])
        diff = np.array([(a["test_metric"] - b["test_metric"]) * scale for a, b in pairs])
        same_steps = all(a["steps"] == b["steps"] for a, b in pairs)
        gaps = []
        for a, b in pairs:
            ours = {h["step"]: h["train_loss"] for h in a["history"]}
            for h in b["history"]:
                if h["step"] in ours and h["train_loss"] and math.isfinite(ours[h["step"]]):
                    gaps.append(abs(ours[h["step"]] - h["train_loss"]) / abs(h["train_loss"]))
        out.append({"config": config_name, "dataset": first["dataset"], "model": first["model"],
                    "task": first["task"], "n_pairs": len(pairs), "seeds": seeds,
                    "mean": float(np.mean(diff)), "std": float(np.std(diff)),
                    "max_abs": float(np.max(np.abs(diff))), "same_steps": same_steps,
                    "max_loss_gap": float(max(gaps)) if gaps else None,
                    "same_fingerprint": all(a["fingerprint"] == b["fingerprint"] for a, b in pairs)})
    return out


# --- tables -------------------------------------------------------------------------------------------

def _cell(mean: float, std: float, digits: int = 1) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ±{std:.{digits}f}"


def _columns(rows: list[dict]) -> dict[str, str]:
    """Column label per configuration: the dataset, or the configuration name when two share a dataset."""
    by_dataset = defaultdict(set)
    for r in rows:
        by_dataset[(r["dataset"], r["model"])].add(r["config"])
    ambiguous = any(len(v) > 1 for v in by_dataset.values())
    return {r["config"]: (r["config"] if ambiguous else dataset_label(r["dataset"])) for r in rows}


def table_paper_layout(rows: list[dict]) -> str:
    """Markdown tables in the layout of the paper's Table 1 (classification) and Table 2 (regression)."""
    parts = []
    labels = _columns(rows)
    classification = [r for r in rows if r["task"] == "classification"]
    if classification:
        columns = list(dict.fromkeys(labels[r["config"]] for r in classification))
        average = len(columns) > 1
        lines = ["Test accuracy (%), mean ± population std over seeds",
                 "", "| Model | Alg. | " + " | ".join(columns) + (" | Avg |" if average else " |"),
                 "|---|---|" + "---|" * (len(columns) + int(average))]
        for model in sorted({r["model"] for r in classification}, key=lambda m: MODEL_ORDER.get(m, 9)):
            for algo in sorted({r["algo"] for r in classification}, key=lambda a: ALGO_ORDER.get(a, 9)):
                cells = {labels[r["config"]]: r for r in classification if r["model"] == model and r["algo"] == algo}
                if not cells:
                    continue
                row = [MODEL_LABEL.get(model, model), ALGO_LABEL.get(algo, algo)]
                row += [_cell(cells[c]["mean"], cells[c]["std"]) if c in cells else "" for c in columns]
                if average:
                    complete = all(c in cells and math.isfinite(cells[c]["mean"]) for c in columns)
                    row.append(_cell(np.mean([cells[c]["mean"] for c in columns]),
                                     np.mean([cells[c]["std"] for c in columns])) if complete else "")
                lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    regression = [r for r in rows if r["task"] == "regression"]
    if regression:
        datasets = list(dict.fromkeys(labels[r["config"]] for r in regression))
        algos = sorted({r["algo"] for r in regression}, key=lambda a: ALGO_ORDER.get(a, 9))
        header = [f"{d} {ALGO_LABEL[a]}" if len(datasets) > 1 else ALGO_LABEL[a] for d in datasets for a in algos]
        lines = ["Test MSE (× 10⁻²; lower is better), mean ± population std over seeds"
                 + ("" if len(datasets) > 1 else f": {datasets[0]}"),
                 "", "| Model | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
        for model in sorted({r["model"] for r in regression}, key=lambda m: MODEL_ORDER.get(m, 9)):
            cells = {(labels[r["config"]], r["algo"]): r for r in regression if r["model"] == model}
            row = [MODEL_LABEL.get(model, model)]
            row += [_cell(cells[(d, a)]["mean"], cells[(d, a)]["std"], 2) if (d, a) in cells else ""
                    for d in datasets for a in algos]
            lines.append("| " + " | ".join(row) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def table_runs(rows: list[dict]) -> str:
    """Markdown: one line per (dataset, model, algorithm) with seeds, metric, steps, time and memory."""
    lines = ["| dataset | model | algo | seeds | test metric (mean ± std) | steps | wall time / run | ms / step "
             "| peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        unit = "accuracy %" if r["task"] == "classification" else "MSE ×1e-2"
        steps = f"{r['steps_min']}" if r["steps_min"] == r["steps_max"] else f"{r['steps_min']}–{r['steps_max']}"
        step_ms = "" if r["step_ms_median"] is None else f"{r['step_ms_median']:.1f}"
        lines.append(f"| {dataset_label(r['dataset'])} | {r['model']} | {r['algo'].upper()} | {r['n_seeds']} | "
                     f"{_cell(r['mean'], r['std'], 2)} {unit} | {steps} | {r['wall_s_mean']:.1f} s | {step_ms} | "
                     f"{r['peak_rss_mb_max']:.0f} MiB |")
    return "\n".join(lines)


def table_paired(pairs: list[dict]) -> str:
    lines = ["| dataset | model | seed pairs | RHEL − BPTT (mean ± std) | max abs difference | same steps "
             "| max rel. train-loss gap |", "|---|---|---|---|---|---|---|"]
    for p in pairs:
        unit = "pts" if p["task"] == "classification" else "×1e-2"
        lines.append(f"| {dataset_label(p['dataset'])} | {p['model']} | {p['n_pairs']} | "
                     f"{p['mean']:+.2f} ±{p['std']:.2f} {unit} | {p['max_abs']:.2f} | "
                     f"{'yes' if p['same_steps'] else 'no'} | "
                     + ("n/a" if p["max_loss_gap"] is None else f"{p['max_loss_gap']:.1e}") + " |")
    return "\n".join(lines)


def table_published(rows: list[dict]) -> str | None:
    """The paper's numbers for the datasets and models present, side by side with ours."""
    lines = []
    for r in rows:
        key = (r["dataset"], r["model"], r["algo"])
        if key in PUBLISHED:
            mean, std = PUBLISHED[key]
            unit = "accuracy %" if r["task"] == "classification" else "MSE ×1e-2"
            lines.append(f"| {dataset_label(r['dataset'])} | {r['model']} | {r['algo'].upper()} | "
                         f"{_cell(r['mean'], r['std'])} | {_cell(mean, std)} | {unit} |")
    if not lines:
        return None
    return "\n".join(["| dataset | model | algo | ours | published (5 seeds) | unit |",
                      "|---|---|---|---|---|---|"] + lines)


# --- plots --------------------------------------------------------------------------------------------

def _curve(runs: list[dict], key: str, scale: float):
    """Steps and the mean, min and max over seeds of a history field (steps where every seed has it)."""
    per_step = defaultdict(list)
    for r in runs:
        for h in r["history"]:
            if h.get(key) is not None:
                per_step[h["step"]].append(h[key] * scale)
    steps = sorted(s for s, v in per_step.items() if len(v) == len(runs)) or sorted(per_step)
    values = [per_step[s] for s in steps]
    return (np.array(steps), np.array([np.mean(v) for v in values]), np.array([np.min(v) for v in values]),
            np.array([np.max(v) for v in values]))


def plot_curves(results: list[dict], path: Path, *, loss: bool = False) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = defaultdict(list)
    for r in results:
        groups[(r["config_name"], r["algo"])].append(r)
    configs = sorted({c for c, _ in groups}, key=lambda c: (groups[next(k for k in groups if k[0] == c)][0]["dataset"],
                                                            c))
    cols = min(len(configs), 4)
    nrows = -(-len(configs) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.2 * nrows), squeeze=False)
    for ax, config in zip(axes.ravel(), configs):
        for algo, style in (("bptt", dict(color="tab:blue", ls="-")), ("rhel", dict(color="tab:red", ls="--"))):
            runs = groups.get((config, algo))
            if not runs:
                continue
            task = runs[0]["task"]
            metric = runs[0]["metric"]
            key = "train_loss" if loss else f"val_{metric}"
            scale = 1.0 if loss else _scale(task)
            steps, mean, lo, hi = _curve(runs, key, scale)
            if steps.size == 0:
                continue
            ax.plot(steps, mean, label=f"{ALGO_LABEL[algo]} (mean of {len(runs)})", **style)
            ax.fill_between(steps, lo, hi, color=style["color"], alpha=0.15, lw=0)
            ylabel = "train loss (interval mean)" if loss else (
                "val accuracy (%)" if task == "classification" else "val MSE (×1e-2)")
            ax.set_ylabel(ylabel)
        if loss:
            ax.set_yscale("log")
        ax.set_title(config, fontsize=9)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(configs):]:
        ax.set_visible(False)
    fig.suptitle(("training loss" if loss else "validation metric") + " per evaluation; band = min–max over seeds",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_rhel_vs_bptt(results: list[dict], rows: list[dict], path: Path) -> None:
    """One panel per dataset: BPTT and RHEL test metric per model (bars: mean ± std; dots: seeds, paired)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = list(dict.fromkeys(r["dataset"] for r in rows))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.0 * len(datasets) + 1, 4.0), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        configs = [r for r in rows if r["dataset"] == dataset]
        names = list(dict.fromkeys(r["config"] for r in configs))
        task = configs[0]["task"]
        for i, config in enumerate(names):
            by_algo = {r["algo"]: r for r in configs if r["config"] == config}
            seeds_xy = {}
            for j, (algo, color) in enumerate((("bptt", "tab:blue"), ("rhel", "tab:red"))):
                r = by_algo.get(algo)
                if r is None:
                    continue
                x = i + (j - 0.5) * 0.35
                ax.bar(x, r["mean"], width=0.33, yerr=r["std"], color=color, alpha=0.55, capsize=3,
                       label=ALGO_LABEL[algo] if i == 0 else None)
                ax.plot([x] * len(r["values"]), r["values"], "k.", ms=4)
                seeds_xy[algo] = dict(zip(r["seeds"], r["values"]))
            if len(seeds_xy) == 2:
                for seed in set(seeds_xy["bptt"]) & set(seeds_xy["rhel"]):
                    ax.plot([i - 0.175, i + 0.175], [seeds_xy["bptt"][seed], seeds_xy["rhel"][seed]], "k-", lw=0.5,
                            alpha=0.6)
        ax.set_xticks(range(len(names)), [n.split("/")[0] if "/" in n else n for n in names], fontsize=8)
        values = [v for r in configs for v in r["values"] if math.isfinite(v)]
        if values and task == "classification":
            low = max(0.0, min(values) - 10.0)
            ax.set_ylim(low, min(100.0, max(values) + 5.0))
        ax.set_ylabel("test accuracy (%)" if task == "classification" else "test MSE (×1e-2)")
        ax.set_title(dataset_label(dataset))
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("RHEL vs BPTT test metric\nbars: mean ± std over seeds; dots: seeds; lines pair the same seed",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- the report ---------------------------------------------------------------------------------------

def build_markdown(results: list[dict], rows: list[dict]) -> str:
    pairs = paired_differences(results)
    parts = ["## Results (paper layout)", table_paper_layout(rows), "## Runs", table_runs(rows)]
    if pairs:
        parts += ["## RHEL − BPTT, paired by seed", table_paired(pairs)]
    published = table_published(rows)
    if published:
        parts += ["## Published (rhel-paper-notes §6.4)", published]
    return "\n\n".join(parts) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    fields = ["config", "dataset", "model", "algo", "task", "metric", "n_seeds", "seeds", "mean", "std", "values",
              "steps_mean", "steps_min", "steps_max", "wall_s_mean", "wall_s_total", "step_ms_median",
              "peak_rss_mb_max", "parameters", "dtype", "stopped"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in rows:
            writer.writerow({**r, "seeds": " ".join(map(str, r["seeds"])),
                             "values": " ".join(f"{v:.6g}" for v in r["values"]), "stopped": " ".join(r["stopped"])})


def write_report(runs_dir: str | Path, out: str | Path | None = None, *, plots: bool = True) -> dict:
    """Write report.md, summary.csv and the plots; return {"markdown", "rows", "files"}."""
    results = collect(runs_dir)
    if not results:
        raise ValueError(f"no result files ({RESULT_FORMAT}) under {runs_dir}")
    out = Path(out if out is not None else runs_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = summarise(results)
    markdown = build_markdown(results, rows)
    files = {"markdown": out / "report.md", "csv": out / "summary.csv"}
    files["markdown"].write_text(markdown, encoding="utf-8")
    write_csv(rows, files["csv"])
    if plots:
        files["learning_curves"] = out / "learning_curves.png"
        files["loss_curves"] = out / "loss_curves.png"
        files["rhel_vs_bptt"] = out / "rhel_vs_bptt.png"
        plot_curves(results, files["learning_curves"])
        plot_curves(results, files["loss_curves"], loss=True)
        plot_rhel_vs_bptt(results, rows, files["rhel_vs_bptt"])
    return {"markdown": markdown, "rows": rows, "files": files, "results": results}
