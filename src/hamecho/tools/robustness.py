"""How RHEL fares on imperfect physics (issue #15): the library behind ``hamecho robustness``.

Two measurements, each one knob of ``hamecho.physical.SimulatedDevice`` at a time:

1. **Gradient sweeps** (:func:`gradient_sweep`): for the linear HRU, the nonlinear HRU (each one block of
   an HSSM) and a 2-block linear HSSM on a random batch, the RHEL gradient on the device against exact
   float64 BPTT of the ideal model: cosine and norm ratio over the *core arrays* — every HRU's θ and B,
   whose gradients RHEL computes from the echo alone (the encoder's and the lower blocks' gradients mix
   in exact autodiff through the residual paths) — the lowest cosine of a single core array, and the
   cosine over all trainable arrays. For damping, also against BPTT of the *damped* model
   (``DampedLeapfrog``: the gradient a perfect learner of the lossy system would follow). Stochastic
   knobs are repeated over device seeds. Noise is also given relative to the nudge RHEL injects (ε·|g|,
   RMS over steps, samples and channels, from :func:`position_cotangents`): the scale it competes with.
2. **Training runs** (:func:`training_runs`): short runs of an HSSM whose cores run on the device
   (JapaneseVowels by default, or a synthetic task), a few seeds per level; test accuracy on the device
   and with the trained parameters on the ideal model, against the ideal device, chance, and the ideal
   device with every echo-borne gradient zeroed (only the arrays after the last core learn: what the
   readout of a fixed random system reaches without RHEL).

:func:`write_outputs` writes the JSON, a Markdown table and PNG plots. Nothing here parses arguments:
``hamecho.cli.robustness`` does.
"""
from __future__ import annotations

import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..training.checkpoints import atomic_write_bytes, atomic_write_json

# --- what is swept --------------------------------------------------------------------------------

# problem name -> (HRU kind, blocks)
PROBLEMS = {"linear": ("linear", 1), "nonlinear": ("nonlinear", 1), "hssm2": ("linear", 2)}

# knob -> levels. "repeats" runs at the noise level REPEATS_NOISE; "drift" is mismatch with drift=True;
# "damping" runs at every length of DAMPING_LENGTHS.
KNOB_LEVELS = {
    "noise": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
    "readout_noise": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
    "repeats": (1, 2, 4, 8, 16, 32),
    "mismatch": (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1),
    "drift": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3),
    "bits": (8, 12, 16, 18, 20, 22, 24, 32, 52),
    "damping": (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
}
KNOBS = tuple(KNOB_LEVELS)
STOCHASTIC = ("noise", "readout_noise", "repeats", "mismatch", "drift")
REPEATS_NOISE = 1e-3
NOISE_EPS = (1.0, 10.0, 100.0)       # the noise sweep is run at each of these ε (the others at setup.eps)
DAMPING_LENGTHS = (50, 200)

# Training: (label, knob, level) per configuration; knob None is the ideal device.
TRAINING_LEVELS = (
    ("ideal", None, None), ("ideal, no echo gradients", "frozen", None),
    ("noise 1e-4", "noise", 1e-4), ("noise 1e-3", "noise", 1e-3), ("noise 1e-2", "noise", 1e-2),
    ("noise 1e-2, 16 echoes", "noise+repeats", (1e-2, 16)),
    ("readout 1e-3", "readout_noise", 1e-3), ("readout 1e-2", "readout_noise", 1e-2),
    ("mismatch 1e-2", "mismatch", 1e-2), ("mismatch 1e-1", "mismatch", 1e-1),
    ("drift 1e-4", "drift", 1e-4), ("drift 1e-3", "drift", 1e-3),
    ("bits 12", "bits", 12), ("bits 16", "bits", 16), ("bits 20", "bits", 20), ("bits 24", "bits", 24),
    ("damping 0.01", "damping", 0.01), ("damping 0.1", "damping", 0.1), ("damping 1", "damping", 1.0),
)


@dataclass(frozen=True)
class GradientSetup:
    """The random problem of the gradient sweeps (float64). ``step``: the nonlinear HRU's δ."""

    length: int = 100
    batch: int = 8
    hidden: int = 8
    state: int = 4
    in_dim: int = 3
    classes: int = 4
    step: float = 0.1
    eps: float = 10.0
    seed: int = 0
    device_seeds: tuple = (0, 1, 2)


@dataclass(frozen=True)
class TrainingSetup:
    """The short training runs (float64; Adam at a constant rate; the final model is evaluated)."""

    dataset: str = "uea/JapaneseVowels"
    hru: str = "linear"
    blocks: int = 2
    hidden: int = 16
    state: int = 8
    step: float = 0.1
    steps: int = 400
    batch: int = 32
    lr: float = 3e-3
    eps: float = 10.0
    seeds: tuple = (0, 1, 2)
    length: int | None = None          # synthetic tasks: the sequence length
    num_samples: int | None = None     # synthetic tasks: the number of cases


def device_for(knob: str | None, level, seed: int = 0, base: dict | None = None):
    """The device of one sweep point: ``SimulatedDevice`` with the one knob set (None: ``IdealDevice``)."""
    from ..physical import IdealDevice, SimulatedDevice

    knobs = dict(base or {})
    if knob in (None, "frozen"):
        return IdealDevice()
    if knob == "repeats":
        knobs.update(noise=REPEATS_NOISE, repeats=int(level))
    elif knob == "noise+repeats":
        knobs.update(noise=level[0], repeats=int(level[1]))
    elif knob == "drift":
        knobs.update(mismatch=level, drift=True)
    elif knob == "bits":
        knobs.update(bits=int(level))
    elif knob in KNOB_LEVELS:
        knobs[knob] = level
    else:
        raise ValueError(f"knob must be one of {', '.join(map(repr, KNOBS))}; got {knob!r}")
    return SimulatedDevice(seed=seed, **knobs)


# --- the gradient problem -------------------------------------------------------------------------

def make_problem(problem: str, setup: GradientSetup, length: int | None = None):
    """A random HSSM (float64) and batch (x, y) for ``problem`` (a key of ``PROBLEMS``)."""
    from ..nn.hssm import HSSM

    if problem not in PROBLEMS:
        raise ValueError(f"problem must be one of {', '.join(map(repr, PROBLEMS))}; got {problem!r}")
    hru, blocks = PROBLEMS[problem]
    model_key, x_key, y_key = jax.random.split(jax.random.PRNGKey(setup.seed), 3)
    model = HSSM(in_dim=setup.in_dim, out_dim=setup.classes, hidden=setup.hidden, state=setup.state, blocks=blocks,
                 hru=hru, step=setup.step, dtype=jnp.float64, key=model_key)
    x = jax.random.normal(x_key, (setup.batch, length or setup.length, setup.in_dim), jnp.float64)
    y = jax.random.randint(y_key, (setup.batch,), 0, setup.classes)
    return model, x, y


def position_cotangents(model, x, y) -> list:
    """∂L/∂φ of every block's core positions, (L, N, P) each, at the ideal model: the g RHEL nudges with.

    The HSSM's training-mode forward pass (no dropout) with a zero added to each core's positions,
    differentiated by BPTT with respect to those zeros.
    """
    from ..core.choices import Choices
    from ..core.engine import run_core
    from ..core.gradients import BPTT
    from ..nn.api import loss_from_outputs

    choices = Choices(gradient=BPTT())

    def loss(extras):
        h = model.encode(x)
        for block, extra in zip(model.blocks, extras):
            normed, _ = block.norm(h, True)
            hru = block.hru
            positions = run_core(hru.hamiltonian, choices, hru.core_parameters(), hru.drives(normed)) + extra
            h = block.after_hru(h, hru.readout(positions, normed), (None, None))
        return loss_from_outputs(model.task, model.decode(h), y)

    zeros = [jnp.zeros((x.shape[1], x.shape[0], block.hru.state_size), x.dtype) for block in model.blocks]
    return jax.grad(loss)(zeros)


def nudge_rms(model, x, y, eps: float) -> float:
    """RMS of the nudges ε·g over every block, step, sample and channel."""
    g = np.concatenate([np.ravel(c) for c in position_cotangents(model, x, y)])
    return float(eps * np.sqrt(np.mean(g**2)))


def _flat(tree, model, keep) -> np.ndarray:
    """The trainable arrays of a gradient tree whose path ``keep(path)`` accepts, as one float64 vector."""
    from ..nn.hssm import trainable

    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(tree, trainable(model)))[0]
    return np.concatenate([np.ravel(np.asarray(leaf, np.float64)) for path, leaf in leaves
                           if keep(jax.tree_util.keystr(path))])


def is_core_array(path: str) -> bool:
    """Every HRU's θ and B: the arrays whose gradient RHEL computes from the echo alone."""
    return ".hru.theta" in path or path.endswith(".hru.B")


def echo_dependent(model):
    """Path filter: the arrays whose gradient passes through at least one echo (all but the arrays after
    the last core: its C, D and GLU, and the head)."""
    last = len(model.blocks) - 1
    after_last_core = (f".blocks[{last}].hru.C", f".blocks[{last}].hru.D", f".blocks[{last}].glu", ".head")
    return lambda path: not path.startswith(after_last_core)


def _cosine(g, r) -> float:
    g_norm, r_norm = float(np.linalg.norm(g)), float(np.linalg.norm(r))
    return float(g @ r) / (g_norm * r_norm) if g_norm > 0 and r_norm > 0 else 0.0


def compare(grads, reference, model) -> dict:
    """cosine and norm_ratio over the core arrays, cosine_min (the lowest cosine of one core array) and
    cosine_all (over every trainable array)."""
    g, r = _flat(grads, model, is_core_array), _flat(reference, model, is_core_array)
    one = lambda tree, path: _flat(tree, model, lambda p: p == path)
    per_array = [_cosine(one(grads, path), one(reference, path)) for path in _paths(model) if is_core_array(path)]
    return {"cosine": _cosine(g, r), "norm_ratio": float(np.linalg.norm(g) / np.linalg.norm(r)),
            "cosine_min": min(per_array),
            "cosine_all": _cosine(_flat(grads, model, lambda p: True), _flat(reference, model, lambda p: True))}


def _paths(model) -> list[str]:
    from ..nn.hssm import trainable

    leaves = jax.tree_util.tree_flatten_with_path(eqx.filter(model, trainable(model)))[0]
    return [jax.tree_util.keystr(path) for path, _ in leaves]


# --- 1. gradient sweeps ---------------------------------------------------------------------------

def _grads(model, x, y, **choices):
    from ..nn.api import value_and_grad

    loss, grads = value_and_grad(model, x, y, **choices)
    return grads


def gradient_sweep(knob: str, *, problems=tuple(PROBLEMS), levels=None, setup: GradientSetup = GradientSetup(),
                   eps_values=None, lengths=None, progress=None) -> list[dict]:
    """One row per (problem, ε, length, level, device seed): the comparison of :func:`compare`.

    ``levels`` default ``KNOB_LEVELS[knob]``; ``eps_values`` default ``NOISE_EPS`` for noise, else
    (setup.eps,); ``lengths`` default ``DAMPING_LENGTHS`` for damping, else (setup.length,).
    Damping rows also carry ``cosine_damped``/``norm_ratio_damped`` against the damped model's BPTT and
    ``gamma_L``, ``gamma_T`` (γ·L and γ·δ̄·L, δ̄ the mean step). ``progress``: a callable advanced once
    per gradient computed (a tqdm bar's ``update``).
    """
    from ..core.gradients import BPTT, RHEL
    from ..physical import DampedLeapfrog

    jax.config.update("jax_enable_x64", True)
    levels = KNOB_LEVELS[knob] if levels is None else tuple(levels)
    eps_values = (NOISE_EPS if knob == "noise" else (setup.eps,)) if eps_values is None else tuple(eps_values)
    lengths = (DAMPING_LENGTHS if knob == "damping" else (setup.length,)) if lengths is None else tuple(lengths)
    seeds = setup.device_seeds if knob in STOCHASTIC else setup.device_seeds[:1]
    rows = []
    for problem in problems:
        for length in lengths:
            model, x, y = make_problem(problem, setup, length)
            reference = _grads(model, x, y, gradient=BPTT())
            mean_step = float(np.mean([np.mean(block.hru.hamiltonian.step_size(block.hru.core_parameters()))
                                       for block in model.blocks]))
            for eps in eps_values:
                nudge = nudge_rms(model, x, y, eps)
                for level in levels:
                    damped = None
                    if knob == "damping":
                        damped = _grads(model, x, y, gradient=BPTT(), integrator=DampedLeapfrog(damping=level))
                    for seed in seeds:
                        grads = _grads(model, x, y, gradient=RHEL(eps=eps), integrator=device_for(knob, level, seed))
                        row = {"problem": problem, "knob": knob, "level": level, "seed": seed, "eps": eps,
                               "length": length, "nudge_rms": nudge, **compare(grads, reference, model)}
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
    """How many RHEL gradients :func:`gradient_sweep` computes for these knobs (for a progress bar)."""
    levels = {**KNOB_LEVELS, **(levels or {})}
    total = 0
    for knob in knobs:
        seeds = len(setup.device_seeds) if knob in STOCHASTIC else 1
        eps = len(noise_eps) if knob == "noise" else 1
        lengths = len(damping_lengths) if knob == "damping" else 1
        total += len(problems) * lengths * eps * len(levels[knob]) * seeds
    return total


def summarize_gradients(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over device seeds, per (problem, knob, ε, length, level)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["problem"], row["knob"], row["eps"], row["length"], row["level"]), []).append(row)
    out = []
    for (problem, knob, eps, length, level), members in groups.items():
        entry = {"problem": problem, "knob": knob, "eps": eps, "length": length, "level": level,
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


# --- 2. training runs -----------------------------------------------------------------------------

def load_training_data(setup: TrainingSetup):
    """The dataset's splits (``hamecho.data.load``), inputs as float64."""
    from ..data import load

    kwargs = {k: v for k, v in (("length", setup.length), ("num_samples", setup.num_samples)) if v is not None}
    return load(setup.dataset, **kwargs)


def accuracy(model, x, y, integrator) -> float:
    from ..nn.api import predict

    return float(np.mean(np.argmax(np.asarray(predict(model, x, integrator=integrator)), axis=-1) == y))


def train_on_device(data, setup: TrainingSetup, device, seed: int, progress=None, frozen: bool = False) -> dict:
    """Train an HSSM whose cores run on ``device`` for ``setup.steps`` Adam steps; test accuracies.

    Returns {final_loss, test_accuracy (on the device), test_accuracy_ideal (the trained parameters on
    the ideal model), seconds}. ``progress``: advanced once per step. ``frozen``: zero every gradient that
    passes through an echo (the baseline without RHEL).
    """
    import optax

    from ..core.gradients import RHEL
    from ..nn.api import init_optimizer, train_step
    from ..nn.hssm import HSSM
    from ..physical import IdealDevice

    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    model_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    model = HSSM(in_dim=data.x_train.shape[-1], out_dim=data.num_classes, hidden=setup.hidden, state=setup.state,
                 blocks=setup.blocks, hru=setup.hru, step=setup.step, dtype=jnp.float64, key=model_key)
    optimizer = optax.adam(setup.lr)
    if frozen:
        through_echo = echo_dependent(model)
        mask = lambda tree: jax.tree_util.tree_map_with_path(lambda p, _: through_echo(jax.tree_util.keystr(p)), tree)
        optimizer = optax.chain(optax.masked(optax.set_to_zero(), mask), optimizer)
    opt_state = init_optimizer(optimizer, model)
    x_train, y_train = np.asarray(data.x_train, np.float64), np.asarray(data.y_train)
    rng = np.random.default_rng(seed)
    batch = min(setup.batch, len(y_train))
    losses = []
    for step in range(setup.steps):
        rows = rng.choice(len(y_train), batch, replace=False)
        model, opt_state, loss = train_step(model, opt_state, x_train[rows], y_train[rows], optimizer,
                                            gradient=RHEL(eps=setup.eps), integrator=device,
                                            key=jax.random.fold_in(dropout_key, step))
        losses.append(float(loss))
        if progress is not None:
            progress(1)
    x_test, y_test = np.asarray(data.x_test, np.float64), np.asarray(data.y_test)
    return {"final_loss": float(np.mean(losses[-20:])), "loss_finite": bool(np.all(np.isfinite(losses))),
            "test_accuracy": accuracy(model, x_test, y_test, device),
            "test_accuracy_ideal": accuracy(model, x_test, y_test, IdealDevice()),
            "seconds": time.perf_counter() - start}


def training_runs(setup: TrainingSetup = TrainingSetup(), levels=TRAINING_LEVELS, progress=None) -> dict:
    """Every (label, knob, level) of ``levels`` trained for every seed; rows and a per-label summary."""
    from ..nn.hssm import HSSM

    data = load_training_data(setup)
    jax.config.update("jax_enable_x64", True)
    probe = HSSM(in_dim=data.x_train.shape[-1], out_dim=data.num_classes, hidden=setup.hidden, state=setup.state,
                 blocks=setup.blocks, hru=setup.hru, step=setup.step, dtype=jnp.float64, key=jax.random.PRNGKey(0))
    rows = slice(0, min(setup.batch, len(data.y_train)))
    nudge = nudge_rms(probe, np.asarray(data.x_train[rows], np.float64), np.asarray(data.y_train[rows]), setup.eps)
    runs = []
    for label, knob, level in levels:
        for seed in setup.seeds:
            device = device_for(knob, level, seed=0)
            result = train_on_device(data, setup, device, seed, progress, frozen=knob == "frozen")
            runs.append({"label": label, "knob": knob, "level": level, "seed": seed, "device": repr(device), **result})
    summary = []
    for label, knob, level in levels:
        members = [r for r in runs if r["label"] == label]
        entry = {"label": label, "knob": knob, "level": level, "seeds": len(members)}
        for key in ("test_accuracy", "test_accuracy_ideal", "final_loss"):
            values = np.array([r[key] for r in members])
            entry[key], entry[key + "_std"] = float(np.mean(values)), float(np.std(values))
        summary.append(entry)
    return {"setup": asdict(setup), "chance": 1.0 / data.num_classes, "num_classes": int(data.num_classes),
            "nudge_rms_at_init": nudge,
            "test_cases": int(len(data.y_test)), "runs": runs, "summary": summary}


# --- everything, and the outputs ------------------------------------------------------------------

@dataclass
class RobustnessResult:
    """What :func:`robustness` measured (the JSON's content)."""

    gradient_setup: dict
    gradients: list = field(default_factory=list)
    gradient_summary: list = field(default_factory=list)
    training: dict | None = None
    command: str = ""
    environment: dict = field(default_factory=dict)


def robustness(*, knobs=KNOBS, problems=tuple(PROBLEMS), setup: GradientSetup = GradientSetup(), levels=None,
               noise_eps=NOISE_EPS, damping_lengths=DAMPING_LENGTHS, training: TrainingSetup | None = TrainingSetup(),
               training_levels=TRAINING_LEVELS, command: str = "", show_progress: bool | None = None
               ) -> RobustnessResult:
    """Run the gradient sweeps of ``knobs`` and (unless ``training`` is None) the training runs.

    ``levels``: {knob: levels} replacing some of ``KNOB_LEVELS``; ``noise_eps``: the ε of the noise sweep;
    ``damping_lengths``: the lengths of the damping sweep. ``show_progress``: tqdm bars (None: only on a
    terminal). ``command``: recorded in the outputs (how they were produced).
    """
    from tqdm.auto import tqdm

    for knob in knobs:
        if knob not in KNOB_LEVELS:
            raise ValueError(f"knob must be one of {', '.join(map(repr, KNOBS))}; got {knob!r}")
    result = RobustnessResult(gradient_setup=asdict(setup), command=command, environment=_environment())
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
                    lengths=damping_lengths if knob == "damping" else None)
        result.gradient_summary = summarize_gradients(result.gradients)
    if training is not None:
        total = len(training_levels) * len(training.seeds) * training.steps
        with tqdm(total=total, desc="training", unit="step",
                  disable=None if show_progress is None else not show_progress) as bar:
            result.training = training_runs(training, training_levels, progress=bar.update)
    return result


def _environment() -> dict:
    import jax as _jax

    return {"jax": _jax.__version__, "numpy": np.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "backend": _jax.default_backend()}


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


# --- Markdown ---------------------------------------------------------------------------------------

KNOB_TITLES = {
    "noise": "thermal noise (std of the momentum kick per step)",
    "readout_noise": "readout noise (std on every measured value)",
    "repeats": f"echo pairs averaged, at noise {REPEATS_NOISE:g}",
    "mismatch": "fixed parameter mismatch in the echo (relative std)",
    "drift": "drifting parameter mismatch (fresh for every echo run; relative std)",
    "bits": "bits per state variable (full scale ±64)",
    "damping": "damping γ (friction −γπ)",
}


def _fmt(mean, std=None, digits=3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean:.{digits}f}"
    return text if std is None else f"{text} ± {std:.{digits}f}"


def markdown_report(result: RobustnessResult) -> str:
    """The tables of docs/physical.md: one per knob (cosine ± std over seeds, norm ratio), and training."""
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
            lines += _damping_table(entries)
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
                cells += [_fmt(at[p]["cosine"], at[p].get("cosine_std")) if p in at else "–" for p in problems]
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
            lines.append(f"| {e['label']} | {_fmt(e['test_accuracy'], e['test_accuracy_std'])} | "
                         f"{_fmt(e['test_accuracy_ideal'], e['test_accuracy_ideal_std'])} | "
                         f"{_fmt(e['final_loss'], e['final_loss_std'])} |")
        lines.append("")
    return "\n".join(lines)


def _damping_table(entries) -> list[str]:
    """Damping: per problem and length, against BPTT of the ideal and of the damped model."""
    lines = ["| problem | L | γ | γ·L | γ·δ̄·L | cos vs ideal BPTT | norm ratio | cos vs damped BPTT | "
             "norm ratio vs damped |", "|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        lines.append(f"| {e['problem']} | {e['length']} | {e['level']:g} | {e['gamma_L']:.3g} | {e['gamma_T']:.3g} | "
                     f"{_fmt(e['cosine'])} | {e['norm_ratio']:.3g} | {_fmt(e['cosine_damped'])} | "
                     f"{e['norm_ratio_damped']:.3g} |")
    return lines + [""]


# --- plots ------------------------------------------------------------------------------------------

PROBLEM_STYLES = {"linear": ("C0", "o"), "nonlinear": ("C3", "s"), "hssm2": ("C2", "^")}
PROBLEM_LABELS = {"linear": "linear HRU", "nonlinear": "nonlinear HRU", "hssm2": "2-block HSSM"}


def _plot_knob(ax, entries, knob, *, relative: bool) -> None:
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


def plot_all(result: RobustnessResult, img_dir: Path) -> list[Path]:
    """One PNG per knob swept (``physical_<knob>.png``) and ``physical_training.png``."""
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
        _plot_knob(axes[0, 0], entries, knob, relative=False)
        if relative:
            _plot_knob(axes[0, 1], entries, knob, relative=True)
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


def quick_settings() -> dict:
    """Keyword arguments of :func:`robustness` for a smoke run (``hamecho robustness --quick``, the tests):
    two levels per knob, tiny problems, two 3-step training runs — seconds of computing, not minutes."""
    return {"setup": GradientSetup(length=12, batch=2, hidden=4, state=2, device_seeds=(0, 1)),
            "levels": {knob: levels[:1] + levels[-1:] for knob, levels in KNOB_LEVELS.items()},
            "noise_eps": (1.0,), "damping_lengths": (12,),
            "training": TrainingSetup(dataset="synthetic/first5", length=20, num_samples=64, blocks=1, hidden=4,
                                      state=2, steps=3, batch=8, seeds=(0,)),
            "training_levels": (("ideal", None, None), ("noise 1e-3", "noise", 1e-3))}


__all__ = ["DAMPING_LENGTHS", "GradientSetup", "KNOBS", "KNOB_LEVELS", "NOISE_EPS", "PROBLEMS", "REPEATS_NOISE",
           "RobustnessResult", "TRAINING_LEVELS", "TrainingSetup", "compare", "device_for", "gradient_sweep",
           "make_problem", "markdown_report", "nudge_rms", "plot_all", "position_cotangents", "quick_settings",
           "robustness", "summarize_gradients", "train_on_device", "training_runs", "write_outputs"]
