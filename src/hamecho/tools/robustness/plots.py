"""The plots of a robustness result: cosine against each knob's level, and the training accuracies."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .knobs import KNOB_TITLES, KNOBS, REPEATS_NOISE

PROBLEM_STYLES = {"linear": ("C0", "o"), "nonlinear": ("C3", "s"), "hssm2": ("C2", "^")}
PROBLEM_LABELS = {"linear": "linear HRU", "nonlinear": "nonlinear HRU", "hssm2": "2-block HSSM"}


def plot_knob(ax, entries, knob, *, relative: bool) -> None:
    """Cosine against the knob's level (``relative``: the level divided by the nudge RMS ε·|g|)."""
    variants = list(dict.fromkeys((e["eps"], e["length"]) for e in entries))
    for (eps, length), line in zip(variants, ["-", "--", ":", "-."]):
        for problem in dict.fromkeys(e["problem"] for e in entries):
            rows = [e for e in entries if e["problem"] == problem and (e["eps"], e["length"]) == (eps, length)]
            color, marker = PROBLEM_STYLES.get(problem, ("k", "x"))
            xs = [e["gamma_T"] if knob == "damping" else e["level"] / (e["nudge_rms"] if relative else 1.0)
                  for e in rows]
            keep = [i for i, v in enumerate(xs) if v > 0]
            xs, rows = [xs[i] for i in keep], [rows[i] for i in keep]
            label = PROBLEM_LABELS.get(problem, problem)
            if len(variants) > 1:
                label += f", ε = {eps:g}" if knob == "noise" else f", L = {length}"
            ax.plot(xs, [e["cosine"] for e in rows], line, color=color, marker=marker, ms=4,
                    label=label + (" vs ideal BPTT" if knob == "damping" else ""))
            if knob == "damping":
                ax.plot(xs, [e["cosine_damped"] for e in rows], line, color=color, marker=marker, ms=5, mfc="none",
                        alpha=0.6, label=label + " vs damped BPTT")
            if rows and "cosine_std" in rows[0]:
                ax.fill_between(xs, [e["cosine"] - e["cosine_std"] for e in rows],
                                [e["cosine"] + e["cosine_std"] for e in rows], color=color, alpha=0.12, lw=0)
    if knob == "repeats":
        ax.set_xscale("log", base=2)
    elif knob != "bits":
        ax.set_xscale("log")
    xlabel = {"damping": "γ·δ̄·L  (e-folds of momentum decay over the sequence)",
              "repeats": f"echo pairs averaged (noise {REPEATS_NOISE:g})"}.get(knob, KNOB_TITLES[knob])
    ax.set_xlabel(f"{knob} / nudge RMS ε·|g|" if relative else xlabel)
    ax.set_ylabel("cosine to BPTT (every HRU's θ and B)")
    ax.set_ylim(-1.05 if knob == "damping" else -0.1, 1.05)
    ax.axhline(0, color="grey", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="best")


def plot_all(result, img_dir: Path) -> list[Path]:
    """One PNG per knob swept in a ``RobustnessResult`` (``physical_<knob>.png``) and
    ``physical_training.png``; returns the paths written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    summary = result.gradient_summary
    for knob in KNOBS:
        entries = [e for e in summary if e["knob"] == knob]
        if not entries:
            continue
        relative = knob in ("noise", "readout_noise")
        fig, axes = plt.subplots(1, 2 if relative else 1, figsize=(11.5 if relative else 6.4, 4.2), squeeze=False)
        plot_knob(axes[0, 0], entries, knob, relative=False)
        if relative:
            plot_knob(axes[0, 1], entries, knob, relative=True)
        fig.suptitle(f"RHEL on a simulated device: {knob}", fontsize=10)
        fig.tight_layout()
        path = img_dir / f"physical_{knob}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    if result.training:
        t = result.training
        fig, ax = plt.subplots(figsize=(7.5, 4.2))
        labels = [e["label"] for e in t["summary"]]
        pos = np.arange(len(labels))
        ax.bar(pos - 0.2, [e["test_accuracy"] for e in t["summary"]], 0.4,
               yerr=[e["test_accuracy_std"] for e in t["summary"]], label="on the device", color="C0")
        ax.bar(pos + 0.2, [e["test_accuracy_ideal"] for e in t["summary"]], 0.4,
               yerr=[e["test_accuracy_ideal_std"] for e in t["summary"]], label="on the ideal model", color="C1")
        ax.axhline(t["chance"], color="k", ls=":", lw=1, label="chance")
        ax.set_xticks(pos, labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.legend(fontsize=7)
        ax.set_title(f"Training on a simulated device: {t['setup']['dataset']}", fontsize=10)
        fig.tight_layout()
        path = img_dir / "physical_training.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
