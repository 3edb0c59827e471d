"""SimulatedTwin: the deterministic physics of a ``SimulatedDevice`` in JAX, differentiable.

A ``SimulatedDevice`` departs from its model in ways that are random on every run (noise, readout noise,
drift) or that no smooth model has (bits), and in two that are fixed: a friction the model does not
know (``damping``) and parameters realised with a fixed relative error (``model_error``: the device
runs with θ·(1 + model_error·ξ), one ξ ~ N(0, 1) per entry of the core's θ, drawn from the device's
``seed`` by :func:`model_error_factors`). ``SimulatedTwin(damping, model_error, seed)`` is the model
that knows both:

- with ``gradient=hamecho.BPTT()`` it gives the gradient of the device's own loss (what a perfect
  learner of this device would follow: the reference of ``hamecho rules``);
- it is the *exact* twin for ``hamecho.PhysicsAware`` (``SimulatedDevice.twin(exact=True)``), where the
  device's nominal twin is the model's own leapfrog.

With both at zero it is the leapfrog; with ``model_error=0`` it is ``DampedLeapfrog(damping)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import jax
import numpy as np

from ..core.integrators import AbstractIntegrator
from .damped import check_damping, run_damped_leapfrog

# Mixed into the seed of the fixed model error (a different stream from the echo mismatch's).
MODEL_ERROR_STREAM = 0x6D6F64656C


def model_error_factors(shapes, model_error: float, seed: int, rng: np.random.Generator | None = None) -> list:
    """1 + model_error·ξ per entry, one float64 array per shape (θ's leaves in ``jax.tree_util`` order).

    ``rng`` None: the device's fixed error, drawn from (``seed``, :data:`MODEL_ERROR_STREAM`) and the same
    for every core of every shape sequence; otherwise drawn from ``rng`` (a drifting error).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, MODEL_ERROR_STREAM])) if rng is None else rng
    return [1.0 + model_error * rng.standard_normal(shape) for shape in shapes]


def with_model_error(theta, model_error: float, seed: int, rng: np.random.Generator | None = None):
    """θ with every entry multiplied by its factor (:func:`model_error_factors`); θ itself when 0."""
    if not model_error:
        return theta
    leaves, treedef = jax.tree_util.tree_flatten(theta)
    factors = model_error_factors([np.shape(leaf) for leaf in leaves], model_error, seed, rng)
    return jax.tree_util.tree_unflatten(treedef, [leaf * np.asarray(factor, leaf.dtype)
                                                  for leaf, factor in zip(leaves, factors)])


def check_model_error(model_error) -> None:
    if (isinstance(model_error, bool) or not isinstance(model_error, (int, float)) or not math.isfinite(model_error)
            or model_error < 0):
        raise ValueError(f"model_error must be a finite number ≥ 0 (a relative error); got {model_error!r}")


@dataclass(frozen=True)
class SimulatedTwin(AbstractIntegrator):
    """The leapfrog with friction γ = ``damping`` and θ realised as θ·(1 + model_error·ξ) (module docstring).

    seed: the device's (ξ is drawn as the device draws it). Differentiable by BPTT, starts from any state.
    """

    dtype: ClassVar[str] = "auto"
    starts_from_state: ClassVar[bool] = True
    damping: float = 0.0
    model_error: float = 0.0
    seed: int = 0

    def __post_init__(self):
        check_damping(self.damping)
        check_model_error(self.model_error)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be an integer ≥ 0; got {self.seed!r}")

    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) and the final state, from ``initial_state`` (default: zero)."""
        theta = with_model_error(theta, self.model_error, self.seed)
        return run_damped_leapfrog(ham, theta, drives, initial_state, self.damping)

    def forward_checkpointed(self, ham, theta, drives, every: int):
        raise ValueError(f"{self!r} is a plain BPTT reference: use hamecho.BPTT() without checkpoint_every")

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        raise ValueError(f"{self!r} is a differentiable model of a simulated device (gradient=hamecho.BPTT(), or "
                         "the twin of hamecho.PhysicsAware); RHEL on the device runs on "
                         "hamecho.physical.SimulatedDevice(...)")
