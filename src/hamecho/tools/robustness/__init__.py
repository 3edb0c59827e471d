"""How RHEL fares on imperfect physics (issue #15): the library behind ``hamecho robustness``.

Two measurements, each one knob of ``hamecho.physical.SimulatedDevice`` at a time (``knobs``), each with a
learning rule on the device (``rules``: RHEL, or another rule plugged in there):

1. **Gradient sweeps** (``gradients.gradient_sweep``): for the linear HRU, the nonlinear HRU (each one block
   of an HSSM) and a 2-block linear HSSM on a random batch (``problems``), the rule's gradient on the device
   against exact float64 BPTT of the ideal model: cosine and norm ratio over the *core arrays* — every HRU's
   θ and B, whose gradients RHEL computes from the echo alone (the encoder's and the lower blocks' gradients
   mix in exact autodiff through the residual paths) — the lowest cosine of a single core array, and the
   cosine over all trainable arrays (``selection``: the arrays are chosen by selectors on the model). For
   damping, also against BPTT of the *damped* model (``DampedLeapfrog``: the gradient a perfect learner of
   the lossy system would follow). Stochastic knobs are repeated over device seeds. Noise is also given
   relative to the nudge RHEL injects (ε·|g|, RMS over steps, samples and channels, from
   ``problems.position_cotangents``): the scale it competes with.
2. **Training runs** (``training.training_runs``): short runs of an HSSM whose cores run on the device
   (JapaneseVowels by default, or a synthetic task), a few seeds per level; test accuracy on the device
   and with the trained parameters on the ideal model, against the ideal device, chance, and the ideal
   device with every echo-borne gradient zeroed (only the arrays after the last core learn: what the
   readout of a fixed random system reaches without RHEL).

``run.robustness`` runs both; ``run.write_outputs`` writes the JSON, the Markdown tables (``markdown``) and
the PNG plots (``plots``). Nothing here parses arguments: ``hamecho.cli.robustness`` does.
"""
from .gradients import count_gradient_points, gradient_sweep, summarize_gradients
from .knobs import (
    DAMPING_LENGTHS,
    KNOB_LEVELS,
    KNOB_TITLES,
    KNOBS,
    NOISE_EPS,
    REPEATS_NOISE,
    STOCHASTIC,
    TRAINING_LEVELS,
    device_for,
)
from .markdown import markdown_report
from .plots import plot_all
from .problems import PROBLEMS, GradientSetup, make_problem, nudge_rms, position_cotangents
from .rules import RHEL_RULE, RULES, LearningRule
from .run import RobustnessResult, quick_settings, robustness, write_outputs
from .selection import after_last_core, compare, core_arrays, echo_dependent, selection
from .training import TrainingSetup, load_training_data, train_on_device, training_runs

__all__ = ["DAMPING_LENGTHS", "GradientSetup", "KNOBS", "KNOB_LEVELS", "KNOB_TITLES", "LearningRule", "NOISE_EPS",
           "PROBLEMS", "REPEATS_NOISE", "RHEL_RULE", "RULES", "RobustnessResult", "STOCHASTIC", "TRAINING_LEVELS",
           "TrainingSetup", "after_last_core", "compare", "core_arrays", "count_gradient_points", "device_for",
           "echo_dependent", "gradient_sweep", "load_training_data", "make_problem", "markdown_report", "nudge_rms",
           "plot_all", "position_cotangents", "quick_settings", "robustness", "selection", "summarize_gradients",
           "train_on_device", "training_runs", "write_outputs"]
