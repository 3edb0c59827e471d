"""Learning rules × device knobs (issue #26 section 2): RHEL, physics-aware training and SPSA on one simulated
device, each knob of ``COMPARISON_LEVELS`` alone, by gradient quality and by training at equal device passes.

1. **Gradients** (:func:`rule_gradients`): on a random 1-block linear HSSM (``problems.make_problem``), each
   rule's gradient with ``SimulatedDevice`` in the integrator's place against the *device's own* gradient:
   float64 BPTT through ``device.twin(exact=True)`` (the model with the device's friction and fixed
   parameter error; for the random knobs — noise, drifting error, bits — the ideal model, their mean).
   Cosine and norm ratio over the core arrays (θ and B, ``selection.compare``), mean over device seeds.
2. **SPSA's variance against the parameter count** (:func:`spsa_dimension_sweep`): on the ideal device, the
   cosine of single-perturbation estimates to BPTT over the perturbed arrays for growing widths, beside
   the Rademacher prediction E|cos| ≈ √(2/(π·d)) for d perturbed numbers (exact for d → ∞ when no entry
   dominates).
3. **Training at equal passes** (:func:`rule_training`): an HSSM on a synthetic task, its cores on the
   device, each rule given the same budget of device passes (``passes_per_step``: RHEL 3 per core, SPSA
   1 + 2·q, physics-aware 1), so physics-aware takes three times the steps; the loss against steps and
   against passes, test accuracy on the device at the end.

The knobs: ``noise`` (thermal noise in every kick), ``model_error`` (the device realises θ·(1 + e·ξ), ξ fixed:
the twin is wrong), ``model_drift`` (the same with ξ fresh in every pass), ``bits`` (states rounded),
``damping`` (friction the model lacks; the physics-aware rule's twin knows it, ``rules.modelled_twin``), and
``circuit``: not the simulated device but ``hamecho.physical.CircuitDevice``, the linear HRU as LC tanks in ngspice,
the level its inductors' series resistance (the device's own gradient: BPTT through ``ExactFlow`` with that
resistance; the physics-aware rule's twin is the same ``ExactFlow``, a loss one measures once and fits).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import equinox as eqx
import jax
import numpy as np
import optax

from ...core.choices import Choices
from ...core.gradients import BPTT, SPSA, spsa_estimate
from ...data import load
from ...nn.api import init_optimizer, loss_and_statistics, predict, train_step, value_and_grad
from ...nn.hssm import HSSM, count_parameters, through_cores
from ...physical import CircuitDevice, SimulatedDevice
from .problems import GradientSetup, make_problem
from .rules import RULES, LearningRule
from .run import environment
from .selection import compare, cosine, flat

COMPARISON_LEVELS = {
    "ideal": (0.0,),
    "noise": (1e-3, 1e-1),
    "model_error": (0.03, 0.3),
    "model_drift": (0.03, 0.3),
    "bits": (10, 16),
    "damping": (0.1, 1.0),
    "circuit": (0.0, 0.1, 1.0),
}
COMPARISON_KNOBS = tuple(COMPARISON_LEVELS)
COMPARISON_TITLES = {
    "ideal": "ideal device (every knob off)",
    "noise": "thermal noise (std of the momentum kick per step)",
    "model_error": "fixed parameter error θ·(1 + e·ξ) (the twin is wrong; relative std e)",
    "model_drift": "drifting parameter error (fresh ξ in every pass; relative std)",
    "bits": "bits per state variable (full scale ±64)",
    "damping": "damping γ (friction −γπ)",
    "circuit": "LC tanks in ngspice, series resistance R (Ω; trapezoidal, fixed step 0.02)",
}
RANDOM_KNOBS = ("noise", "model_drift", "bits")
# Training: one level per knob, where the gradient sweeps separate the rules.
TRAINING_POINTS = (("ideal", 0.0), ("noise", 1e-1), ("model_error", 0.3), ("damping", 1.0), ("circuit", 1.0))


CIRCUIT_TIMESTEP = 0.02   # ngspice's fixed step, in drive steps: gradient error ~1e-5 (docs/physical.md, the h² line)


def comparison_device(knob: str, level, seed: int = 0):
    """The device of one point: ``knob`` (one of ``COMPARISON_KNOBS``) at ``level``, seeded: a ``SimulatedDevice``,
    or for ``circuit`` a ``CircuitDevice`` (deterministic; the seed does not apply)."""
    if knob not in COMPARISON_LEVELS:
        raise ValueError(f"knob must be one of {', '.join(map(repr, COMPARISON_KNOBS))}; got {knob!r}")
    if knob == "circuit":
        return CircuitDevice(timestep=CIRCUIT_TIMESTEP, series_resistance=float(level))
    if knob == "ideal":
        return SimulatedDevice(seed=seed)
    if knob == "model_drift":
        return SimulatedDevice(seed=seed, model_error=level, model_drift=True)
    if knob == "bits":
        return SimulatedDevice(seed=seed, bits=int(level))
    return SimulatedDevice(seed=seed, **{knob: level})


@dataclass(frozen=True)
class ComparisonSetup:
    """The settings of the comparison (float64 throughout). ``eps``: RHEL's nudge; SPSA's ``n_perturbations``
    and ``scale`` are those of ``rules``' SPSA rule."""

    rules: tuple = ("rhel", "physics_aware", "spsa")
    gradient: GradientSetup = GradientSetup(length=30, batch=4, hidden=4, state=2, device_seeds=(0, 1))
    eps: float = 10.0
    widths: tuple = (2, 4, 8, 16)       # hidden sizes of the SPSA variance sweep (state = hidden / 2)
    spsa_draws: int = 16                # single-perturbation estimates per width
    dataset: str = "synthetic/first5"
    length: int = 20
    num_samples: int = 256
    hidden: int = 4
    state: int = 2
    step: float = 0.1
    batch: int = 16
    lr: float = 3e-2
    passes: int = 300                   # device passes per training run (equal for every rule)
    seeds: tuple = (0,)
    levels: dict = field(default_factory=lambda: dict(COMPARISON_LEVELS))
    training_points: tuple = TRAINING_POINTS


def rule_gradients(setup: ComparisonSetup, progress=None) -> list[dict]:
    """One row per (knob, level, rule, device seed): ``selection.compare`` of the rule's gradient with the
    device's own gradient (module docstring), and the passes one update costs."""
    jax.config.update("jax_enable_x64", True)
    model, x, y = make_problem("linear", setup.gradient)
    rows = []
    for knob, levels in setup.levels.items():
        seeds = setup.gradient.device_seeds if knob in RANDOM_KNOBS else setup.gradient.device_seeds[:1]
        for level in levels:
            reference_device = comparison_device(knob, level, 0)
            _, reference = value_and_grad(model, x, y, gradient=BPTT(), integrator=reference_device.twin(exact=True))
            for name in setup.rules:
                rule = RULES[name]
                for seed in seeds:
                    device = comparison_device(knob, level, seed)
                    gradient = rule.gradient(setup.eps, device)
                    if isinstance(gradient, SPSA):
                        gradient = SPSA(n_perturbations=gradient.n_perturbations, scale=gradient.scale, seed=seed)
                    _, grads = value_and_grad(model, x, y, gradient=gradient, integrator=device)
                    rows.append({"knob": knob, "level": level, "rule": name, "seed": seed,
                                 "passes": gradient.passes_per_step(device, cores=len(model.blocks)),
                                 **compare(grads, reference, model)})
                    jax.clear_caches()  # every device compiles anew
                    if progress is not None:
                        progress(1)
    return rows


def summarize_rule_gradients(rows: list[dict]) -> list[dict]:
    """Mean and standard deviation over device seeds, per (knob, level, rule)."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["knob"], row["level"], row["rule"]), []).append(row)
    out = []
    for (knob, level, rule), members in groups.items():
        entry = {"knob": knob, "level": level, "rule": rule, "seeds": len(members), "passes": members[0]["passes"]}
        for key in ("cosine", "norm_ratio", "cosine_min"):
            values = np.array([m[key] for m in members])
            entry[key], entry[key + "_std"] = float(np.mean(values)), float(np.std(values))
        out.append(entry)
    return out


def spsa_dimension_sweep(setup: ComparisonSetup, progress=None) -> list[dict]:
    """Per width: d (the numbers SPSA perturbs), the mean and std over ``setup.spsa_draws`` draws of the cosine of
    a one-perturbation estimate to BPTT over those numbers, and the prediction √(2/(π·d))."""
    jax.config.update("jax_enable_x64", True)
    spsa = RULES["spsa"].gradient(setup.eps, None)
    rows = []
    for width in setup.widths:
        gradient_setup = GradientSetup(**{**asdict(setup.gradient), "hidden": width, "state": max(1, width // 2)})
        model, x, y = make_problem("linear", gradient_setup)
        perturbed = through_cores(model)
        _, reference = value_and_grad(model, x, y, gradient=BPTT())
        choices = Choices(gradient=spsa, integrator=SimulatedDevice())
        cosines = [cosine(flat(one_spsa_draw(model, x, y, choices, draw), perturbed), flat(reference, perturbed))
                   for draw in range(setup.spsa_draws)]
        d = int(flat(reference, perturbed).size)
        rows.append({"hidden": width, "perturbed": d, "parameters": count_parameters(model),
                     "cosine": float(np.mean(cosines)), "cosine_std": float(np.std(cosines)),
                     "predicted": float(np.sqrt(2.0 / (np.pi * d)))})
        jax.clear_caches()
        if progress is not None:
            progress(1)
    return rows


@eqx.filter_jit
def one_spsa_draw(model, x, y, choices: Choices, draw):
    """SPSA's estimate (``choices.gradient``) for the perturbed arrays (``through_cores``) from perturbation stream
    ``draw`` (traced: one compilation for every draw), the other arrays None."""
    perturbed, others = eqx.partition(model, through_cores(model))
    loss = lambda part: loss_and_statistics(eqx.combine(part, others), x, y, choices, None)[0]
    return spsa_estimate(loss, perturbed, choices.gradient, jax.random.fold_in(jax.random.PRNGKey(0), draw))


def train_with_rule(data, setup: ComparisonSetup, rule: LearningRule, device, seed: int, progress=None) -> dict:
    """Train an HSSM whose cores run on ``device`` with ``rule`` until ``setup.passes`` device passes are spent.

    Returns {steps, passes_per_step, losses (one per step), passes (cumulative, per step), test_accuracy (on the
    device), seconds}."""
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    model_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    model = HSSM(in_dim=data.x_train.shape[-1], out_dim=data.num_classes, hidden=setup.hidden, state=setup.state,
                 blocks=1, hru="linear", step=setup.step, dtype=jax.numpy.float64, key=model_key)
    optimizer = optax.adam(setup.lr)
    opt_state = init_optimizer(optimizer, model)
    gradient = rule.gradient(setup.eps, device)
    per_step = gradient.passes_per_step(device, cores=len(model.blocks))
    steps = max(1, setup.passes // per_step)
    x_train, y_train = np.asarray(data.x_train, np.float64), np.asarray(data.y_train)
    rng = np.random.default_rng(seed)
    batch = min(setup.batch, len(y_train))
    losses = []
    for step in range(steps):
        rows = rng.choice(len(y_train), batch, replace=False)
        model, opt_state, loss = train_step(model, opt_state, x_train[rows], y_train[rows], optimizer,
                                            gradient=gradient, integrator=device,
                                            key=jax.random.fold_in(dropout_key, step))
        losses.append(float(loss))
        if progress is not None:
            progress(per_step)
    x_test, y_test = np.asarray(data.x_test, np.float64), np.asarray(data.y_test)
    predicted = np.argmax(np.asarray(predict(model, x_test, integrator=device)), axis=-1)
    return {"steps": steps, "passes_per_step": per_step, "losses": losses,
            "passes": [per_step * (k + 1) for k in range(steps)],
            "test_accuracy": float(np.mean(predicted == y_test)), "seconds": time.perf_counter() - start}


def rule_training(setup: ComparisonSetup, progress=None) -> dict:
    """Every (knob, level) of ``setup.training_points`` × rule × seed trained at ``setup.passes`` passes."""
    data = load(setup.dataset, length=setup.length, num_samples=setup.num_samples)
    runs = []
    for knob, level in setup.training_points:
        for name in setup.rules:
            for seed in setup.seeds:
                device = comparison_device(knob, level, seed)
                result = train_with_rule(data, setup, RULES[name], device, seed, progress)
                runs.append({"knob": knob, "level": level, "rule": name, "seed": seed, "device": repr(device),
                             **result})
                jax.clear_caches()
    return {"chance": 1.0 / data.num_classes, "test_cases": int(len(data.y_test)), "runs": runs}


@dataclass
class ComparisonResult:
    """What :func:`compare_rules` measured (the JSON's content)."""

    setup: dict
    gradients: list = field(default_factory=list)
    gradient_summary: list = field(default_factory=list)
    spsa_dimensions: list = field(default_factory=list)
    training: dict | None = None
    command: str = ""
    environment: dict = field(default_factory=dict)


def compare_rules(setup: ComparisonSetup = ComparisonSetup(), *, gradients: bool = True, train: bool = True,
                  command: str = "", show_progress: bool | None = None) -> ComparisonResult:
    """The three measurements of the module docstring (the gradient sweeps and SPSA's unless ``gradients`` is
    False, training unless ``train`` is False)."""
    from tqdm.auto import tqdm

    for name in setup.rules:
        if name not in RULES:
            raise ValueError(f"rules must be among {', '.join(map(repr, RULES))}; got {name!r}")
    for knob in setup.levels:
        comparison_device(knob, setup.levels[knob][0])  # an unknown knob is refused before any work
    result = ComparisonResult(setup=_jsonable(asdict(setup)), command=command, environment=environment())
    disable = None if show_progress is None else not show_progress
    points = sum(len(levels) * len(setup.rules) * (len(setup.gradient.device_seeds) if knob in RANDOM_KNOBS else 1)
                 for knob, levels in setup.levels.items())
    if gradients:
        with tqdm(total=points, desc="gradients", unit="grad", disable=disable) as bar:
            result.gradients = rule_gradients(setup, bar.update)
        result.gradient_summary = summarize_rule_gradients(result.gradients)
    if gradients and "spsa" in setup.rules and setup.widths:
        with tqdm(total=len(setup.widths), desc="SPSA widths", unit="width", disable=disable) as bar:
            result.spsa_dimensions = spsa_dimension_sweep(setup, bar.update)
    if train and setup.training_points:
        total = len(setup.training_points) * len(setup.rules) * len(setup.seeds) * setup.passes
        with tqdm(total=total, desc="training", unit="pass", disable=disable) as bar:
            result.training = rule_training(setup, bar.update)
    return result


def _jsonable(value):
    """Tuples and dict keys as JSON writes them (the setup's record)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def quick_comparison() -> ComparisonSetup:
    """A smoke run of the whole pipeline (``--quick``, the tests): seconds, not minutes."""
    return ComparisonSetup(gradient=GradientSetup(length=10, batch=2, hidden=4, state=2, device_seeds=(0,)),
                           widths=(2,), spsa_draws=2, length=20, num_samples=32, hidden=4, state=2, batch=8,
                           passes=3, levels={"ideal": (0.0,), "damping": (1.0,)},
                           training_points=(("damping", 1.0),))

