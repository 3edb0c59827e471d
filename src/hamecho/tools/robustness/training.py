"""The training runs: short runs of an HSSM whose cores run on the device, a few seeds per level.

Test accuracy on the device and with the trained parameters on the ideal model, against the ideal device,
chance, and the ideal device with every echo-borne gradient zeroed (only the arrays after the last core
learn: what the readout of a fixed random system reaches without the learning rule). A plain loop of
``hamecho.train_step`` calls on a seeded permutation: unlike ``hamecho train`` (``training/``) it has no
configuration file, checkpoints or evaluation splits, because each run takes seconds to minutes.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ...data import load
from ...nn.api import init_optimizer, predict, train_step
from ...nn.hssm import HSSM
from ...physical import IdealDevice
from .knobs import TRAINING_LEVELS, device_for
from .problems import nudge_rms
from .rules import RHEL_RULE, LearningRule
from .selection import echo_dependent


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


DEFAULT_TRAINING_SETUP = TrainingSetup()


def load_training_data(setup: TrainingSetup):
    """The dataset's splits (``hamecho.data.load``)."""
    kwargs = {k: v for k, v in (("length", setup.length), ("num_samples", setup.num_samples)) if v is not None}
    return load(setup.dataset, **kwargs)


def new_model(data, setup: TrainingSetup, key) -> HSSM:
    """The float64 HSSM of ``setup`` for ``data``'s inputs and classes."""
    return HSSM(in_dim=data.x_train.shape[-1], out_dim=data.num_classes, hidden=setup.hidden, state=setup.state,
                blocks=setup.blocks, hru=setup.hru, step=setup.step, dtype=jnp.float64, key=key)


def accuracy(model, x, y, integrator) -> float:
    """The fraction of x (N, L, in_dim) classified as y (N,), the cores run by ``integrator``."""
    return float(np.mean(np.argmax(np.asarray(predict(model, x, integrator=integrator)), axis=-1) == y))


def train_on_device(data, setup: TrainingSetup, device, seed: int, progress=None, frozen: bool = False,
                    rule: LearningRule = RHEL_RULE) -> dict:
    """Train an HSSM whose cores run on ``device`` for ``setup.steps`` Adam steps with ``rule`` (at
    ``setup.eps``); test accuracies.

    Returns {final_loss, loss_finite, test_accuracy (on the device), test_accuracy_ideal (the trained
    parameters on the ideal model), seconds}. ``progress``: advanced once per step. ``frozen``: zero every
    gradient that passes through an echo (the baseline without the learning rule).
    """
    jax.config.update("jax_enable_x64", True)
    start = time.perf_counter()
    model_key, dropout_key = jax.random.split(jax.random.PRNGKey(seed))
    model = new_model(data, setup, model_key)
    optimizer = optax.adam(setup.lr)
    if frozen:
        optimizer = optax.chain(optax.masked(optax.set_to_zero(), echo_dependent(model)), optimizer)
    opt_state = init_optimizer(optimizer, model)
    x_train, y_train = np.asarray(data.x_train, np.float64), np.asarray(data.y_train)
    rng = np.random.default_rng(seed)
    batch = min(setup.batch, len(y_train))
    gradient = rule.gradient(setup.eps, device)
    losses = []
    for step in range(setup.steps):
        rows = rng.choice(len(y_train), batch, replace=False)
        model, opt_state, loss = train_step(model, opt_state, x_train[rows], y_train[rows], optimizer,
                                            gradient=gradient, integrator=device,
                                            key=jax.random.fold_in(dropout_key, step))
        losses.append(float(loss))
        if progress is not None:
            progress(1)
    x_test, y_test = np.asarray(data.x_test, np.float64), np.asarray(data.y_test)
    return {"final_loss": float(np.mean(losses[-20:])), "loss_finite": bool(np.all(np.isfinite(losses))),
            "test_accuracy": accuracy(model, x_test, y_test, device),
            "test_accuracy_ideal": accuracy(model, x_test, y_test, IdealDevice()),
            "seconds": time.perf_counter() - start}


def training_runs(setup: TrainingSetup = TrainingSetup(), levels=TRAINING_LEVELS, progress=None,
                  rule: LearningRule = RHEL_RULE) -> dict:
    """Every (label, knob, level) of ``levels`` trained with ``rule`` for every seed; rows and a per-label
    summary."""
    data = load_training_data(setup)
    jax.config.update("jax_enable_x64", True)
    probe = new_model(data, setup, jax.random.PRNGKey(0))
    rows = slice(0, min(setup.batch, len(data.y_train)))
    nudge = nudge_rms(probe, np.asarray(data.x_train[rows], np.float64), np.asarray(data.y_train[rows]), setup.eps)
    runs = []
    for label, knob, level in levels:
        for seed in setup.seeds:
            device = device_for(knob, level, seed=0)
            result = train_on_device(data, setup, device, seed, progress, frozen=knob == "frozen", rule=rule)
            runs.append({"label": label, "knob": knob, "level": level, "seed": seed, "device": repr(device),
                         "rule": rule.name, **result})
    summary = []
    for label, knob, level in levels:
        members = [r for r in runs if r["label"] == label]
        entry = {"label": label, "knob": knob, "level": level, "seeds": len(members)}
        for key in ("test_accuracy", "test_accuracy_ideal", "final_loss"):
            values = np.array([r[key] for r in members])
            entry[key], entry[key + "_std"] = float(np.mean(values)), float(np.std(values))
        summary.append(entry)
    return {"setup": asdict(setup), "rule": rule.name, "chance": 1.0 / data.num_classes,
            "num_classes": int(data.num_classes), "nudge_rms_at_init": nudge,
            "test_cases": int(len(data.y_test)), "runs": runs, "summary": summary}
