"""The gradient problems: a random float64 HSSM and batch per problem, and the nudge RHEL injects into it."""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ...core.choices import Choices
from ...core.engine import run_core
from ...core.gradients import BPTT
from ...nn.api import loss_from_outputs
from ...nn.hssm import HSSM

# problem name -> (HRU kind, blocks)
PROBLEMS = {"linear": ("linear", 1), "nonlinear": ("nonlinear", 1), "hssm2": ("linear", 2)}


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


DEFAULT_GRADIENT_SETUP = GradientSetup()


def make_problem(problem: str, setup: GradientSetup, length: int | None = None):
    """A random HSSM (float64) and batch x (batch, length, in_dim), y (batch,) for ``problem`` (a key of
    ``PROBLEMS``); ``length`` default ``setup.length``."""
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
