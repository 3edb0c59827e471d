"""The device protocol: what RHEL needs from a physical system, and the learning rule on its measurements.

A :class:`Device` takes the integrator's place in a Hamiltonian core. It has to do one thing,
:meth:`Device.run`: run its dynamics for L steps from a given state, driven by given inputs, with given
nudges added to its momentum after each step, and report what was *measured* along the way
(:class:`Measurement`). Everything else is the base class's, in JAX:

- the forward pass is one run from the zero state, nothing added; its positions are the layer's outputs;
- the echo is two runs from the mirrored final state (momentum flipped), the inputs replayed backwards,
  with ±ε·g added to the momentum after each step (spec §3). At the *measured* states of each run —
  the half-step position φ½ and the momentum before and after each kick — the learner evaluates the
  gradients of its *model's* step energy E = δ·[V(φ½) + ½(T(π_before) + T(π_after))] and differences
  them: ∂L/∂θ = −Σ_k (∇θE₊ − ∇θE₋)/(2ε), ∂L/∂u_k likewise. A local rule: nothing is differentiated
  through the device, which may be anything — a NumPy simulation (``SimulatedDevice``), or an
  instrument driven from Python (``HostDevice``, docs/physical.md).
- ``echo_runs() > 1`` averages the estimates of that many echo pairs; before each further pair the device
  runs the forward pass again (a physical state cannot be copied, only prepared anew).

For the other learning rules a device also reports, from one forward run, the state it measured before
every step (:meth:`Device.forward_measured`, what ``hamecho.PhysicsAware`` linearises its twin at), and
names its twin (:meth:`Device.twin`: the differentiable model it was built to implement, or with
``exact=True`` the one that also knows its deterministic imperfections); ``hamecho.SPSA`` needs only
the forward pass.

A device is a hashable frozen dataclass (a static argument of jitted functions). It cannot be
differentiated by BPTT (``choices.check_compatible`` refuses the combination, with the reason below)
and runs whole sequences from the zero state (no time chunks).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from ..core.gradients import echo_energy_half_difference, estimator_scale, nudges_after_each_step
from ..core.integrators import AbstractIntegrator, EchoResult, Leapfrog, leapfrog_step, zero_state

NOT_DIFFERENTIABLE_BECAUSE = ("a physical device is measured, not computed: there is no derivative of its dynamics "
                              "to take, and RHEL's echo is how it learns")


class Measurement(NamedTuple):
    """What a device reports from one run of L steps over N samples (arrays (L, N, P) unless said).

    positions: φ after each step (in the forward run: the layer's outputs);
    half_positions: φ½ of each step, where the kick's force acts;
    momenta_before / momenta_after: π before and after each step's kick (after: before that step's nudge);
    final_state: (φ, π) after the last step, each (N, P) — the device's own state, handed back to it for
    the echo (a real device keeps it in place and flips its momentum), not a measurement.
    """

    positions: jax.Array
    half_positions: jax.Array
    momenta_before: jax.Array
    momenta_after: jax.Array
    final_state: tuple


@dataclass(frozen=True)
class Device(AbstractIntegrator):
    """Base class of the devices: implement :meth:`run`; forward pass, echo and learning rule are here.

    See the module docstring. Subclasses are frozen dataclasses (hashable, static under ``jax.jit``).
    """

    differentiable: ClassVar[bool] = False
    not_differentiable_because: ClassVar[str] = NOT_DIFFERENTIABLE_BECAUSE
    starts_from_state: ClassVar[bool] = False
    measures_states: ClassVar[bool] = True
    dtype: ClassVar[str] = "auto"

    def label(self) -> str:
        return f"{self!r} (a physical device)"

    def run(self, ham, theta, drives, state, nudges, *, echo: bool, run: int) -> Measurement:
        """Run the device: drives (L, N, U) in the order played, from ``state`` (φ, π) each (N, P), adding
        ``nudges[j]`` (L, N, P) to the momentum after step j (None in the forward pass: nothing added).

        ``echo``: whether this is an echo run (a device's parameters may differ between the passes);
        ``run``: which repetition (0, 1, …; a noisy device draws fresh noise for each); a Python int
        for the first, a traced integer for the others (they run inside ``lax.scan``).
        ``theta``: the model's parameters, which the device is set to. Returns a :class:`Measurement`
        in the drives' dtype.
        """
        raise NotImplementedError

    def echo_runs(self) -> int:
        """How many echo pairs the estimate averages (1 unless the device says otherwise)."""
        return 1

    def twin(self, *, exact: bool = False) -> AbstractIntegrator:
        """The differentiable model of this device that ``hamecho.PhysicsAware`` backpropagates through.

        ``exact=False``: the model the device was built to implement (here the model's own leapfrog);
        ``exact=True``: the model that also knows the device's deterministic imperfections (a subclass
        with such imperfections overrides this; noise and rounding no twin knows).
        """
        del exact
        return Leapfrog()

    # --- the integrator's two methods, in terms of run() ---------------------------------------------
    def forward(self, ham, theta, drives, initial_state=None):
        """Positions (L, N, P) and the device's final state, one run from the zero state."""
        if initial_state is not None:
            raise ValueError(f"{self.label()} runs whole sequences from the zero state")
        measured = self.run(ham, theta, drives, zero_state(ham, theta, drives), None, echo=False, run=0)
        return measured.positions, measured.final_state

    def forward_measured(self, ham, theta, drives):
        """One forward run from the zero state: the positions (L, N, P) and the state measured before every
        step, (φ_{k−1}, π_{k−1}) each (L, N, P): the measured position after the previous step and the
        measured momentum before the step's kick (before the first step: the zero state it starts from)."""
        measured = self.run(ham, theta, drives, zero_state(ham, theta, drives), None, echo=False, run=0)
        positions, zeros = measured.positions, jnp.zeros_like(measured.positions[:1])
        before = lambda a: jnp.concatenate([zeros, a], axis=0)  # the device starts at rest: nothing to measure
        return positions, (before(positions[:-1]), before(measured.momenta_before[1:]))

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        """The two nudged echoes on the device, and RHEL's estimates at their measured states.

        Echo step j undoes forward step k = L−1−j (input u_k); after it the momentum gets ±ε·g_{k−1}
        (none after the last). ``rule``: how the estimates of the two echoes are differenced
        (``core.gradients.echo_energy_half_difference``).
        """
        if final_state_cotangent is not None:
            raise ValueError(f"{self.label()} runs whole sequences: its echo takes no final-state cotangent")
        minus_sign = -1.0 if rhel.estimator == "two_sided" else 0.0
        nudges = rhel.eps * cotangents                                     # (L, N, P), forward order
        echo_drives = drives[::-1]
        echo_nudges = nudges_after_each_step(nudges)[::-1]                 # after echo step j: ε·g_{L−2−j}

        def echo_pair(state, run):
            position, momentum = state
            return [self.run(ham, theta, echo_drives, (position, -momentum + sign * nudges[-1]), sign * echo_nudges,
                             echo=True, run=run) for sign in (1.0, minus_sign)]

        first = echo_pair(final_state, 0)
        end_state = tuple(0.5 * (a + b) for a, b in zip(first[0].final_state, first[1].final_state))
        estimates = measured_estimates(ham, rhel, rule, theta, drives, *first)
        runs = self.echo_runs()
        if runs > 1:  # each further pair after a fresh forward run (run = 1, 2, …: a traced index)
            def another(total, run):
                state = self.run(ham, theta, drives, zero_state(ham, theta, drives), None, echo=False, run=run)
                more = measured_estimates(ham, rhel, rule, theta, drives, *echo_pair(state.final_state, run))
                return jax.tree_util.tree_map(jnp.add, total, more), None

            estimates, _ = jax.lax.scan(another, estimates, jnp.arange(1, runs))
            estimates = jax.tree_util.tree_map(lambda a: a / runs, estimates)
        return EchoResult(*estimates, end_state, None)


def measured_estimates(ham, rhel, rule, theta, drives, plus: Measurement, minus: Measurement):
    """RHEL's estimates (∂L/∂θ, ∂L/∂u (L, N, U)) from the measured states of the two echoes.

    The measurements come in echo order (step j undoes forward step L−1−j); the model's step-energy
    gradients are taken at each step's measured (φ½, π_before, π_after) and accumulated over the steps in
    the order the echo ran, as the engine's own echo does.
    """
    measured = lambda m: (m.half_positions, m.momenta_before, m.momenta_after)

    def body(acc, inputs):
        drive, plus_states, minus_states = inputs
        g_theta, g_drive = echo_energy_half_difference(ham, theta, plus_states, minus_states, drive, rule)
        return jax.tree_util.tree_map(jnp.add, acc, g_theta), g_drive

    acc = jax.tree_util.tree_map(jnp.zeros_like, theta)
    acc, drive_half_diffs = jax.lax.scan(body, acc, (drives[::-1], measured(plus), measured(minus)))
    scale = estimator_scale(rhel)
    return jax.tree_util.tree_map(lambda a: scale * a, acc), scale * drive_half_diffs[::-1]


@dataclass(frozen=True)
class IdealDevice(Device):
    """The perfect device: the model's own leapfrog in JAX (``core.integrators.leapfrog_step``), measured
    exactly. Through the device path (runs, measurements, the local rule) it gives the engine's gradients
    (float64: to rounding); it is the reference the other devices are compared with."""

    def run(self, ham, theta, drives, state, nudges, *, echo, run):
        del echo, run  # the ideal device is the same in both passes and every time
        if nudges is None:
            nudges = jnp.zeros(drives.shape[:2] + state[1].shape[-1:], drives.dtype)

        def body(carry, inputs):
            drive, nudge = inputs
            momentum = carry[1]
            new_position, new_momentum, half_position = leapfrog_step(ham, theta, *carry, drive)
            return (new_position, new_momentum + nudge), (new_position, half_position, momentum, new_momentum)

        state = tuple(s.astype(drives.dtype) for s in state)
        final_state, trajectory = jax.lax.scan(body, state, (drives, nudges))
        return Measurement(*trajectory, final_state)
