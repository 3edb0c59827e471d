"""The gradient sweeps: a learning rule's gradient on the device against exact float64 BPTT, one knob at a time.

For each problem (``problems.PROBLEMS``), length, ε and level of the knob (and device seed, for the
stochastic knobs): the rule's gradient with the device in the integrator's place, compared with BPTT of
the ideal model (``selection.compare``), and for damping also with BPTT of the damped model
(``DampedLeapfrog``: the gradient a perfect learner of the lossy system would follow).
"""
from __future__ import annotations

import jax
import numpy as np

from ...core.gradients import BPTT
from ...nn.api import value_and_grad
from ...physical import DampedLeapfrog
from .knobs import DAMPING_LENGTHS, KNOB_LEVELS, NOISE_EPS, STOCHASTIC, device_for
from .problems import DEFAULT_GRADIENT_SETUP, PROBLEMS, GradientSetup, make_problem, nudge_rms
from .rules import RHEL_RULE, LearningRule
from .selection import compare


def gradients_of(model, x, y, **choices):
    """The gradient of the loss over (x, y) with the strategy objects ``choices`` (``value_and_grad``'s)."""
    _, grads = value_and_grad(model, x, y, **choices)
    return grads


def gradient_sweep(knob: str, *, problems=tuple(PROBLEMS), levels=None, setup: GradientSetup = DEFAULT_GRADIENT_SETUP,
                   eps_values=None, lengths=None, progress=None, rule: LearningRule = RHEL_RULE) -> list[dict]:
    """One row per (problem, ε, length, level, device seed): the comparison of ``selection.compare``.

    ``levels`` default ``KNOB_LEVELS[knob]``; ``eps_values`` default ``NOISE_EPS`` for noise, else
    (setup.eps,); ``lengths`` default ``DAMPING_LENGTHS`` for damping, else (setup.length,).
    Damping rows also carry ``cosine_damped``/``norm_ratio_damped`` against the damped model's BPTT and
    ``gamma_L``, ``gamma_T`` (γ·L and γ·δ̄·L, δ̄ the mean step). ``progress``: a callable advanced once
    per gradient computed (a tqdm bar's ``update``). ``rule``: the learning rule on the device
    (``rules.LearningRule``; RHEL by default), its name recorded in every row.
    """
    jax.config.update("jax_enable_x64", True)
    levels = KNOB_LEVELS[knob] if levels is None else tuple(levels)
    eps_values = (NOISE_EPS if knob == "noise" else (setup.eps,)) if eps_values is None else tuple(eps_values)
    lengths = (DAMPING_LENGTHS if knob == "damping" else (setup.length,)) if lengths is None else tuple(lengths)
    seeds = setup.device_seeds if knob in STOCHASTIC else setup.device_seeds[:1]
    rows = []
    for problem in problems:
        for length in lengths:
            model, x, y = make_problem(problem, setup, length)
            reference = gradients_of(model, x, y, gradient=BPTT())
            mean_step = float(np.mean([np.mean(block.hru.hamiltonian.step_size(block.hru.core_parameters()))
                                       for block in model.blocks]))
            for eps in eps_values:
                nudge = nudge_rms(model, x, y, eps)
                for level in levels:
                    damped = None
                    if knob == "damping":
                        damped = gradients_of(model, x, y, gradient=BPTT(), integrator=DampedLeapfrog(damping=level))
                    for seed in seeds:
                        device = device_for(knob, level, seed)
                        grads = gradients_of(model, x, y, gradient=rule.gradient(eps, device), integrator=device)
                        row = {"problem": problem, "knob": knob, "rule": rule.name, "level": level, "seed": seed,
                               "eps": eps, "length": length, "nudge_rms": nudge, **compare(grads, reference, model)}
                        if damped is not None:
                            row.update({f"{k}_damped": v for k, v in compare(grads, damped, model).items()
                                        if not k.endswith("_all")})
                            row.update(gamma_L=level * length, gamma_T=level * mean_step * length)
                        rows.append(row)
                        jax.clear_caches()  # every device compiles anew: keep hundreds of executables out of memory
                        if progress is not None:
                            progress(1)
    return rows


def count_gradient_points(knobs, problems, setup: GradientSetup, levels=None, noise_eps=NOISE_EPS,
                          damping_lengths=DAMPING_LENGTHS) -> int:
    """How many gradients :func:`gradient_sweep` computes on a device for these knobs (for a progress bar)."""
    levels = {**KNOB_LEVELS, **(levels or {})}
    total = 0
    for knob in knobs:
        seeds = len(setup.device_seeds) if knob in STOCHASTIC else 1
        eps = len(noise_eps) if knob == "noise" else 1
        lengths = len(damping_lengths) if knob == "damping" else 1
        total += len(problems) * lengths * eps * len(levels[knob]) * seeds
    return total


def summarize_gradients(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over device seeds, per (problem, knob, rule, ε, length, level)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["problem"], row["knob"], row.get("rule", RHEL_RULE.name), row["eps"], row["length"], row["level"])
        groups.setdefault(key, []).append(row)
    out = []
    for (problem, knob, rule, eps, length, level), members in groups.items():
        entry = {"problem": problem, "knob": knob, "rule": rule, "eps": eps, "length": length, "level": level,
                 "seeds": len(members), "nudge_rms": members[0]["nudge_rms"]}
        for key in ("cosine", "norm_ratio", "cosine_min", "cosine_all", "cosine_damped", "norm_ratio_damped",
                    "gamma_L", "gamma_T"):
            if key in members[0]:
                values = np.array([m[key] for m in members])
                entry[key] = float(np.mean(values))
                if len(members) > 1:
                    entry[key + "_std"] = float(np.std(values))
        out.append(entry)
    return out
