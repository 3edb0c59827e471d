"""Everything of ``hamecho robustness``: the gradient sweeps and the training runs, and their outputs."""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import numpy as np

from ...training.checkpoints import atomic_write_bytes, atomic_write_json
from .gradients import count_gradient_points, gradient_sweep, summarize_gradients
from .knobs import DAMPING_LENGTHS, KNOB_LEVELS, KNOBS, NOISE_EPS, TRAINING_LEVELS, check_knob
from .markdown import markdown_report
from .plots import plot_all
from .problems import DEFAULT_GRADIENT_SETUP, PROBLEMS, GradientSetup
from .rules import RHEL_RULE, LearningRule
from .training import DEFAULT_TRAINING_SETUP, TrainingSetup, training_runs


@dataclass
class RobustnessResult:
    """What :func:`robustness` measured (the JSON's content)."""

    gradient_setup: dict
    gradients: list = field(default_factory=list)
    gradient_summary: list = field(default_factory=list)
    training: dict | None = None
    command: str = ""
    environment: dict = field(default_factory=dict)


def robustness(*, knobs=KNOBS, problems=tuple(PROBLEMS), setup: GradientSetup = DEFAULT_GRADIENT_SETUP,
               levels=None, noise_eps=NOISE_EPS, damping_lengths=DAMPING_LENGTHS,
               training: TrainingSetup | None = DEFAULT_TRAINING_SETUP, training_levels=TRAINING_LEVELS,
               command: str = "", show_progress: bool | None = None, rule: LearningRule = RHEL_RULE
               ) -> RobustnessResult:
    """Run the gradient sweeps of ``knobs`` and (unless ``training`` is None) the training runs, with ``rule``
    on the device (``rules.LearningRule``; RHEL by default).

    ``levels``: {knob: levels} replacing some of ``KNOB_LEVELS``; ``noise_eps``: the ε of the noise sweep;
    ``damping_lengths``: the lengths of the damping sweep. ``show_progress``: tqdm bars (None: only on a
    terminal). ``command``: recorded in the outputs (how they were produced).
    """
    from tqdm.auto import tqdm

    for knob in knobs:
        check_knob(knob)
    result = RobustnessResult(gradient_setup=asdict(setup), command=command, environment=environment())
    if knobs:
        levels = {**KNOB_LEVELS, **(levels or {})}
        total = count_gradient_points(knobs, problems, setup, levels, noise_eps, damping_lengths)
        with tqdm(total=total, desc="gradients", unit="grad",
                  disable=None if show_progress is None else not show_progress) as bar:
            for knob in knobs:
                bar.set_postfix_str(knob)
                result.gradients += gradient_sweep(
                    knob, problems=problems, levels=levels[knob], setup=setup, progress=bar.update,
                    eps_values=noise_eps if knob == "noise" else None,
                    lengths=damping_lengths if knob == "damping" else None, rule=rule)
        result.gradient_summary = summarize_gradients(result.gradients)
    if training is not None:
        total = len(training_levels) * len(training.seeds) * training.steps
        with tqdm(total=total, desc="training", unit="step",
                  disable=None if show_progress is None else not show_progress) as bar:
            result.training = training_runs(training, training_levels, progress=bar.update, rule=rule)
    return result


def environment() -> dict:
    """The versions and machine the outputs were produced with."""
    return {"jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "backend": jax.default_backend()}


def write_outputs(result: RobustnessResult, out_dir, img_dir=None) -> list[Path]:
    """robustness.json and robustness.md in ``out_dir``; the PNG plots in ``img_dir`` (default ``out_dir``).

    Returns the paths written.
    """
    out_dir = Path(out_dir)
    img_dir = out_dir if img_dir is None else Path(img_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    img_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / "robustness.json", out_dir / "robustness.md"]
    atomic_write_json(written[0], asdict(result))
    atomic_write_bytes(written[1], markdown_report(result).encode())
    written += plot_all(result, img_dir)
    return written


def quick_settings() -> dict:
    """Keyword arguments of :func:`robustness` for a smoke run (``hamecho robustness --quick``, the tests):
    two levels per knob, tiny problems, two 3-step training runs — seconds of computing, not minutes."""
    return {"setup": GradientSetup(length=12, batch=2, hidden=4, state=2, device_seeds=(0, 1)),
            "levels": {knob: levels[:1] + levels[-1:] for knob, levels in KNOB_LEVELS.items()},
            "noise_eps": (1.0,), "damping_lengths": (12,),
            "training": TrainingSetup(dataset="synthetic/first5", length=20, num_samples=64, blocks=1, hidden=4,
                                      state=2, steps=3, batch=8, seeds=(0,)),
            "training_levels": (("ideal", None, None), ("noise 1e-3", "noise", 1e-3))}
