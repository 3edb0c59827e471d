"""The outputs of a rules × knobs comparison (``comparison.compare_rules``): the JSON, a Markdown report and plots.

- ``rules_gradients.png``: per knob, the cosine of each rule's gradient to the device's own gradient against
  the knob's level (mean ± std over device seeds);
- ``rules_spsa_dimension.png``: SPSA's one-perturbation cosine against the number of perturbed numbers, with
  the √(2/(π·d)) prediction;
- ``rules_training.png``: per training point, the training loss (a running mean over 10 steps) against
  device passes (solid) and, on a second row, against steps.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import numpy as np

from ...training.checkpoints import atomic_write_bytes, atomic_write_json
from .comparison import COMPARISON_TITLES, ComparisonResult

RULE_STYLES = {"rhel": ("C0", "o"), "physics_aware": ("C3", "s"), "spsa": ("C2", "^")}
RULE_LABELS = {"rhel": "RHEL", "physics_aware": "physics-aware", "spsa": "SPSA"}


def markdown_comparison(result: ComparisonResult) -> str:
    """The Markdown report: gradient cosines per knob level and rule, SPSA against d, accuracies at equal passes."""
    rules = list(result.setup["rules"])
    lines = ["# Learning rules × device knobs", "", f"Command: `{result.command}`", "",
             "## Gradient cosine to the device's own gradient (core arrays θ and B; mean over device seeds)", "",
             "| knob | level | " + " | ".join(f"{RULE_LABELS.get(r, r)} (passes)" for r in rules) + " |",
             "|---|---|" + "---|" * len(rules)]
    summary = {(e["knob"], e["level"], e["rule"]): e for e in result.gradient_summary}
    for knob, level in dict.fromkeys((e["knob"], e["level"]) for e in result.gradient_summary):
        cells = []
        for rule in rules:
            e = summary.get((knob, level, rule))
            cells.append("–" if e is None else f"{e['cosine']:.3f}" + (f" ± {e['cosine_std']:.3f}" if e["seeds"] > 1
                                                                       else "") + f" ({e['passes']})")
        lines.append(f"| {knob} | {level:g} | " + " | ".join(cells) + " |")
    if result.spsa_dimensions:
        lines += ["", "## SPSA: one perturbation's cosine against the number d of perturbed numbers", "",
                  "| hidden | d | cosine (mean ± std) | √(2/(π·d)) |", "|---|---|---|---|"]
        lines += [f"| {r['hidden']} | {r['perturbed']} | {r['cosine']:.3f} ± {r['cosine_std']:.3f} | "
                  f"{r['predicted']:.3f} |" for r in result.spsa_dimensions]
    if result.training:
        passes = result.setup["passes"]
        lines += ["", f"## Training at {passes} device passes (test accuracy on the device; chance "
                  f"{result.training['chance']:.2f}; mean over seeds)", "",
                  "| knob | level | " + " | ".join(f"{RULE_LABELS.get(r, r)} (steps)" for r in rules) + " |",
                  "|---|---|" + "---|" * len(rules)]
        runs = result.training["runs"]
        for knob, level in dict.fromkeys((r["knob"], r["level"]) for r in runs):
            cells = []
            for rule in rules:
                members = [r for r in runs if (r["knob"], r["level"], r["rule"]) == (knob, level, rule)]
                cells.append("–" if not members else f"{np.mean([m['test_accuracy'] for m in members]):.3f} "
                                                     f"({members[0]['steps']})")
            lines.append(f"| {knob} | {level:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_comparison(result: ComparisonResult, img_dir: Path) -> list[Path]:
    """The PNG plots of the module docstring; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    knobs = [k for k in dict.fromkeys(e["knob"] for e in result.gradient_summary) if k != "ideal"]
    if knobs:
        fig, axes = plt.subplots(1, len(knobs), figsize=(3.6 * len(knobs), 3.2), squeeze=False)
        for ax, knob in zip(axes[0], knobs):
            for rule in result.setup["rules"]:
                rows = [e for e in result.gradient_summary if e["knob"] == knob and e["rule"] == rule]
                color, marker = RULE_STYLES.get(rule, ("k", "x"))
                xs, ys = [e["level"] for e in rows], np.array([e["cosine"] for e in rows])
                ax.plot(xs, ys, "-", color=color, marker=marker, ms=4, label=RULE_LABELS.get(rule, rule))
                std = np.array([e["cosine_std"] for e in rows])
                ax.fill_between(xs, ys - std, ys + std, color=color, alpha=0.12, lw=0)
            levels = [e["level"] for e in result.gradient_summary if e["knob"] == knob]
            positive = [level for level in levels if level > 0]
            if knob != "bits" and len(positive) == len(levels):
                ax.set_xscale("log")
            elif knob != "bits" and positive:   # a level 0 (the ideal circuit): a linear stretch at the left
                ax.set_xscale("symlog", linthresh=min(positive))
            ax.set_ylim(-1.05, 1.05)
            ax.set_title(COMPARISON_TITLES.get(knob, knob), fontsize=7)
            ax.set_xlabel(knob)
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("cosine to the device's gradient")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, img_dir / "rules_gradients.png"))
    if result.spsa_dimensions:
        fig, ax = plt.subplots(figsize=(4.2, 3.2))
        d = [r["perturbed"] for r in result.spsa_dimensions]
        ax.errorbar(d, [r["cosine"] for r in result.spsa_dimensions],
                    yerr=[r["cosine_std"] for r in result.spsa_dimensions], fmt="o", color="C2", label="measured")
        ax.plot(d, [r["predicted"] for r in result.spsa_dimensions], "k--", label="√(2/(π·d))")
        ax.set_xscale("log")
        ax.set_xlabel("numbers SPSA perturbs, d")
        ax.set_ylabel("cosine of one estimate to BPTT")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        written.append(_save(fig, img_dir / "rules_spsa_dimension.png"))
    if result.training:
        runs = result.training["runs"]
        points = list(dict.fromkeys((r["knob"], r["level"]) for r in runs))
        fig, axes = plt.subplots(2, len(points), figsize=(3.2 * len(points), 5.4), squeeze=False)
        for column, (knob, level) in enumerate(points):
            for rule in result.setup["rules"]:
                color, _ = RULE_STYLES.get(rule, ("k", "x"))
                for i, run in enumerate(r for r in runs if (r["knob"], r["level"], r["rule"]) == (knob, level, rule)):
                    smooth = running_mean(run["losses"], 10)
                    label = RULE_LABELS.get(rule, rule) if i == 0 else None
                    axes[0][column].plot(run["passes"], smooth, color=color, lw=1, label=label)
                    axes[1][column].plot(np.arange(1, len(smooth) + 1), smooth, color=color, lw=1, label=label)
            axes[0][column].set_title(f"{knob} {level:g}", fontsize=8)
            axes[0][column].set_xlabel("device passes")
            axes[1][column].set_xlabel("steps")
            for row in (0, 1):
                axes[row][column].grid(alpha=0.3)
        axes[0][0].set_ylabel("training loss")
        axes[1][0].set_ylabel("training loss")
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        written.append(_save(fig, img_dir / "rules_training.png"))
    return written


def running_mean(values, window: int) -> np.ndarray:
    """The mean of the last ``window`` values at every index (fewer at the start)."""
    values = np.asarray(values, float)
    sums = np.cumsum(np.concatenate([[0.0], values]))
    starts = np.maximum(np.arange(1, len(values) + 1) - window, 0)
    return (sums[1:] - sums[starts]) / (np.arange(1, len(values) + 1) - starts)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_comparison(result: ComparisonResult, out_dir, img_dir=None) -> list[Path]:
    """rules.json and rules.md in ``out_dir``, the plots in ``img_dir`` (default ``out_dir``); the paths written."""
    out_dir = Path(out_dir)
    img_dir = out_dir if img_dir is None else Path(img_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "rules.json", out_dir / "rules.md"]
    atomic_write_json(written[0], asdict(result))
    atomic_write_bytes(written[1], markdown_comparison(result).encode())
    return written + plot_comparison(result, img_dir)
