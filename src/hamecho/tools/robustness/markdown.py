"""The Markdown report of a robustness result: the tables of docs/physical.md (one per knob, and training)."""
from __future__ import annotations

import math

from .knobs import KNOB_TITLES, KNOBS


def fmt(mean, std=None, digits=3) -> str:
    """``mean`` (± ``std``) with ``digits`` decimals; "–" when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def markdown_report(result) -> str:
    """The tables of docs/physical.md for a ``RobustnessResult``: one per knob (cosine ± std over seeds, norm
    ratio), and training."""
    lines = ["# RHEL on imperfect physics: measured robustness", ""]
    if result.command:
        lines += ["Produced by:", "", f"    {result.command}", ""]
    setup = result.gradient_setup
    lines += [f"Gradient problems: random batch of {setup['batch']} × L = {setup['length']}, hidden {setup['hidden']}, "
              f"state {setup['state']}, nonlinear δ = {setup['step']}, ε = {setup['eps']} unless stated; cosine and "
              "norm ratio of the RHEL gradient on the device against float64 BPTT of the ideal model, over the core "
              "arrays (every HRU's θ and B, concatenated; mean ± std over device seeds).", ""]
    summary = result.gradient_summary
    for knob in KNOBS:
        entries = [e for e in summary if e["knob"] == knob]
        if not entries:
            continue
        lines += [f"## {knob}: {KNOB_TITLES[knob]}", ""]
        if knob == "damping":
            lines += damping_table(entries)
            continue
        problems = list(dict.fromkeys(e["problem"] for e in entries))
        variants = list(dict.fromkeys((e["eps"], e["length"]) for e in entries))
        for eps, length in variants:
            if len(variants) > 1:
                lines += [f"ε = {eps:g}, L = {length}:", ""]
            rows = [e for e in entries if (e["eps"], e["length"]) == (eps, length)]
            header = ["level"] + [f"{p} cos" for p in problems] + [f"{p} norm ratio" for p in problems]
            if knob in ("noise", "readout_noise"):
                header += [f"{p} level / nudge" for p in problems]
            lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            for level in list(dict.fromkeys(e["level"] for e in rows)):
                at = {e["problem"]: e for e in rows if e["level"] == level}
                cells = [f"{level:g}"]
                cells += [fmt(at[p]["cosine"], at[p].get("cosine_std")) if p in at else "–" for p in problems]
                cells += [f"{at[p]['norm_ratio']:.3g}" if p in at else "–" for p in problems]
                if knob in ("noise", "readout_noise"):
                    cells += [f"{level / at[p]['nudge_rms']:.3g}" if p in at else "–" for p in problems]
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    if result.training:
        t = result.training
        s = t["setup"]
        nudge = t.get("nudge_rms_at_init")
        lines += ["## Training on the device", "",
                  f"{s['dataset']}, {s['blocks']}-block {s['hru']} HSSM (hidden {s['hidden']}, state {s['state']}), "
                  f"{s['steps']} Adam steps (lr {s['lr']}, batch {s['batch']}), RHEL ε = {s['eps']}, seeds "
                  f"{', '.join(map(str, s['seeds']))}; test accuracy ({t['test_cases']} cases) of the final model on "
                  f"the device it was trained on, and with its parameters on the ideal model; chance "
                  f"{t['chance']:.3f}. \"No echo gradients\": the ideal device with every gradient that passes "
                  "through an echo zeroed (only the last core's readout, its GLU and the head learn)."
                  + (f" Nudge ε·|g| (RMS, first batch, at initialisation): {nudge:.2g}."
                                           if nudge else ""), "",
                  "| device | test accuracy on the device | on the ideal model | final training loss |",
                  "|---|---|---|---|"]
        for e in t["summary"]:
            lines.append(f"| {e['label']} | {fmt(e['test_accuracy'], e['test_accuracy_std'])} | "
                         f"{fmt(e['test_accuracy_ideal'], e['test_accuracy_ideal_std'])} | "
                         f"{fmt(e['final_loss'], e['final_loss_std'])} |")
        lines.append("")
    return "\n".join(lines)


def damping_table(entries) -> list[str]:
    """Damping: per problem and length, against BPTT of the ideal and of the damped model."""
    lines = ["| problem | L | γ | γ·L | γ·δ̄·L | cos vs ideal BPTT | norm ratio | cos vs damped BPTT | "
             "norm ratio vs damped |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['problem']} | {e['length']} | {e['level']:g} | {e['gamma_L']:.3g} | {e['gamma_T']:.3g} | "
                     f"{fmt(e['cosine'])} | {e['norm_ratio']:.3g} | {fmt(e['cosine_damped'])} | "
                     f"{e['norm_ratio_damped']:.3g} |")
    return lines + [""]
