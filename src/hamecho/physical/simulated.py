"""SimulatedDevice: an imperfect physical HRU in plain NumPy (no JAX inside), and the physics it simulates.

The device is built with the model's parameters θ, converted once per run into *physical* parameters
(stiffness, step, …) by the NumPy physics registered for the model's Hamiltonian (``ham.name``):
:data:`PHYSICS` knows the paper's two HRUs; :func:`register_physics` adds another. The simulation is
the leapfrog of spec §2 with the imperfections switched on by the knobs (all off by default, and then
it agrees with the JAX engine to rounding):

===============  ===========================================================================================
``noise``        thermal noise: a Gaussian kick of standard deviation ``noise`` added to the momentum at
                 every step's kick, forward and echo (absolute, momentum units, per step)
``readout_noise``  Gaussian noise of that standard deviation on every *measured* value (the forward pass's
                 positions, the echo's half-step positions and momenta); the dynamics are untouched
``mismatch``     the echo runs with each physical parameter p·(1 + mismatch·ξ), ξ ~ N(0, 1) per entry;
                 ``drift=False``: one ξ for the device (drawn from ``seed``, the same in every echo);
                 ``drift=True``: a fresh ξ for every echo run (each of the pair, each repetition, each step
                 of training) — parameters that wander between runs
``bits``         every state variable held on a signed b-bit fixed-point grid over [−full_scale, full_scale)
                 (default ±64: the paper's linear HRU on normalised inputs reaches |φ| ≈ 45): spacing
                 2·full_scale/2^b, rounded to nearest after every update (drift, kick, nudge), saturating at
                 the ends; None: float64
``damping``      friction −γπ the model does not know: each kick also adds −γ·δ·π_before (a lossy medium,
                 forward and echo alike)
``model_error``  the device realises the model's parameters with a relative error in *every* pass: each
                 entry of the core's θ becomes θ·(1 + model_error·ξ), ξ ~ N(0, 1) (before the physical
                 parameters are formed); ``model_drift=False``: one ξ for the device (from ``seed``, the
                 same in every pass and core: a wrong twin, ``twin.SimulatedTwin`` knows it);
                 ``model_drift=True``: a fresh ξ for every run (forward, echo, each loss evaluation)
``repeats``      average the estimates of N echo pairs, each after a fresh forward run
===============  ===========================================================================================
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import numpy as np

from .device import Measurement
from .host import HostDevice
from .twin import SimulatedTwin, check_model_error, with_model_error

# The paper's linear HRU is clipped to δ²A ≤ 0.999·4 (hamecho.core.hamiltonians.STABILITY_MARGIN).
_STABILITY = 0.999 * 4.0


@dataclass(frozen=True)
class NumpyPhysics:
    """A Hamiltonian's dynamics in NumPy, for one sample batch: what a simulated device needs.

    parameters(θ) → dict of physical parameters (NumPy arrays; the ones ``mismatch`` perturbs);
    step(params) → δ, () or (P,); velocity(params, π) → ∂T/∂π; force(params, φ, drive) → −∂V/∂φ,
    with π, φ (N, P) and drive (N, U).
    """

    parameters: Callable[[dict], dict]
    step: Callable[[dict], np.ndarray]
    velocity: Callable[[dict, np.ndarray], np.ndarray]
    force: Callable[[dict, np.ndarray, np.ndarray], np.ndarray]


def _sigmoid(x):
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def _linear_parameters(theta):
    step = _sigmoid(theta["steps"])
    return {"stiffness": np.minimum(np.maximum(theta["a"], 0.0), _STABILITY / step**2), "step": step}


LINEAR_PHYSICS = NumpyPhysics(
    parameters=_linear_parameters,
    step=lambda p: p["step"],
    velocity=lambda p, momentum: momentum,
    force=lambda p, position, drive: -p["stiffness"] * position + drive,
)

NONLINEAR_PHYSICS = NumpyPhysics(
    parameters=lambda theta: {"w": theta["w"], "b": theta["b"], "alpha": theta["alpha"],
                              "step": np.exp(theta["log_step"])},
    step=lambda p: p["step"],
    velocity=lambda p, momentum: momentum,
    force=lambda p, position, drive: -p["alpha"] * position - np.tanh(p["w"] * position + drive + p["b"]),
)

# NumPy physics per Hamiltonian name (``SeparableHamiltonian.name``).
PHYSICS: dict[str, NumpyPhysics] = {"linear": LINEAR_PHYSICS, "nonlinear": NONLINEAR_PHYSICS}


def register_physics(name: str, physics: NumpyPhysics) -> None:
    """Let ``SimulatedDevice`` run cores of the Hamiltonian called ``name`` (its ``SeparableHamiltonian.name``)."""
    if not isinstance(physics, NumpyPhysics):
        raise ValueError(f"physics must be a hamecho.physical.NumpyPhysics; got {type(physics).__name__}")
    PHYSICS[name] = physics


def physics_for(ham) -> NumpyPhysics:
    """The registered NumPy physics of ``ham``, or a ``ValueError`` saying how to register one."""
    try:
        return PHYSICS[ham.name]
    except KeyError:
        raise ValueError(f"SimulatedDevice has no NumPy physics for Hamiltonian {ham.name!r} (known: "
                         f"{', '.join(map(repr, sorted(PHYSICS)))}); register one with "
                         "hamecho.physical.register_physics(name, NumpyPhysics(...))") from None


def _check_number(name, value, *, low=0.0, integer=False, allow_none=False):
    if value is None and allow_none:
        return
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value) or value < low:
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} ≥ {low:g}{' or None' if allow_none else ''}; got {value!r}")


class Grid:
    """Signed b-bit fixed point over [−full_scale, full_scale): round to nearest, saturate at the ends."""

    def __init__(self, bits: int | None, full_scale: float):
        self.bits = bits
        if bits is not None:
            self.spacing = 2.0 * full_scale / 2.0**bits
            self.low, self.high = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1

    def __call__(self, x):
        if self.bits is None:
            return x
        return np.clip(np.rint(x / self.spacing), self.low, self.high) * self.spacing


@dataclass(frozen=True, kw_only=True)
class SimulatedDevice(HostDevice):
    """An imperfect physical HRU simulated in NumPy; the knobs are described in the module docstring.

    With every knob at its default it is the ideal leapfrog (float64) reached through
    ``jax.pure_callback``: the engine's gradients to rounding. ``seed`` roots every random draw
    (``hamecho.physical.host`` explains how noise stays reproducible yet fresh under ``jax.jit``).
    """

    noise: float = 0.0
    readout_noise: float = 0.0
    mismatch: float = 0.0
    drift: bool = False
    bits: int | None = None
    full_scale: float = 64.0
    damping: float = 0.0
    model_error: float = 0.0
    model_drift: bool = False
    repeats: int = 1

    def __post_init__(self):
        super().__post_init__()
        for name in ("noise", "readout_noise", "mismatch", "damping"):
            _check_number(name, getattr(self, name))
        check_model_error(self.model_error)
        for name in ("drift", "model_drift"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False; got {getattr(self, name)!r}")
        _check_number("bits", self.bits, low=2, integer=True, allow_none=True)
        if self.bits is not None and self.bits > 53:
            raise ValueError(f"bits must be at most 53 (a float64 holds the grid's integers exactly); got {self.bits}")
        _check_number("full_scale", self.full_scale)
        if self.full_scale == 0:
            raise ValueError("full_scale must be > 0")
        _check_number("repeats", self.repeats, low=1, integer=True)

    def __repr__(self) -> str:
        """The knobs that are on, and the seed: ``SimulatedDevice(noise=0.001, repeats=4, seed=0)``."""
        on = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
              if f.name != "seed" and getattr(self, f.name) != f.default]
        return f"SimulatedDevice({', '.join(on + [f'seed={self.seed}'])})"

    def echo_runs(self) -> int:
        return self.repeats

    def twin(self, *, exact: bool = False):
        """The model's leapfrog; ``exact=True``: the one that also knows the friction and the fixed model error
        (``SimulatedTwin``; a drifting error is random, and the nominal model is its mean)."""
        fixed_error = 0.0 if self.model_drift else self.model_error
        if not exact or not (self.damping or fixed_error):
            return super().twin()
        return SimulatedTwin(damping=self.damping, model_error=fixed_error, seed=self.seed)

    def run(self, ham, theta, drives, state, nudges, *, echo, run):
        physics_for(ham)  # an unknown Hamiltonian is refused while tracing, with the way out
        return super().run(ham, theta, drives, state, nudges, echo=echo, run=run)

    def device_parameters(self, physics: NumpyPhysics, theta: dict, *, echo: bool, rng: np.random.Generator) -> dict:
        """The physical parameters the device runs with: the model's, with the echo's mismatch."""
        params = physics.parameters(theta)
        if not (echo and self.mismatch):
            return params
        source = rng if self.drift else np.random.default_rng(np.random.SeedSequence([self.seed, 0x6D69736D]))
        return {name: value * (1.0 + self.mismatch * source.standard_normal(np.shape(value)))
                for name, value in sorted(params.items())}

    def run_on_host(self, ham, theta, drives, state, nudges, *, echo, run, rng):
        del run  # fresh noise per run comes through rng
        physics = physics_for(ham)
        theta = with_model_error(theta, self.model_error, self.seed, rng if self.model_drift else None)
        params = self.device_parameters(physics, theta, echo=echo, rng=rng)
        step = physics.step(params)
        grid = Grid(self.bits, self.full_scale)
        position, momentum = grid(state[0]), grid(state[1])
        trajectory = np.empty((4,) + drives.shape[:2] + position.shape[-1:])
        for k in range(drives.shape[0]):
            trajectory[2, k] = momentum
            half_position = grid(position + 0.5 * step * physics.velocity(params, momentum))
            kick = step * physics.force(params, half_position, drives[k])
            if self.damping:
                kick = kick - self.damping * step * momentum
            if self.noise:
                kick = kick + self.noise * rng.standard_normal(momentum.shape)
            momentum = grid(momentum + kick)
            position = grid(half_position + 0.5 * step * physics.velocity(params, momentum))
            trajectory[0, k], trajectory[1, k], trajectory[3, k] = position, half_position, momentum
            if nudges is not None:
                momentum = grid(momentum + nudges[k])
        if self.readout_noise:
            trajectory = trajectory + self.readout_noise * rng.standard_normal(trajectory.shape)
        return Measurement(*trajectory, (position, momentum))
