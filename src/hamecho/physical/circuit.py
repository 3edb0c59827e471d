"""CircuitDevice: the linear HRU as a bank of LC tanks, simulated by ngspice (issue #26, section 1).

The circuit. Each state channel of each sample is one parallel LC tank driven by a current source. The
canonical pair is the inductor's flux φ = L·i_L (the position) and the capacitor's charge π = C·v (the
momentum). One drive step lasts one second of circuit time; a channel with step δ and stiffness A
(``hamecho.core.hamiltonians``: δ = sigmoid(s), A = min(relu(a), 0.999·4/δ²)) gets

    C = 1/δ farad,   L = 1/(δ·A) henry,   source current I(τ) = δ·u_k during step k,

so that dφ/dτ = v = δ·π and dπ/dτ = I − i_L = δ·(u_k − A·φ): the linear HRU's Hamiltonian dynamics in
continuous time (``ExactFlow`` solves them exactly; the model's leapfrog approximates them). A channel
with A = 0 has no inductor; its flux is read from an ideal flux meter (a 1 S transconductance charging
a 1 F capacitor: v_meter = ∫v dτ). ``series_resistance`` puts R ohms in series with every inductor
(dφ/dτ = δ·π − R·i_L): a real inductor's loss, which the model does not know.

The drives. u is piecewise constant (one value per step); each jump is a linear ramp of width
``transition`` (in drive steps) centred on the step boundary, so the drive's integral is exact. A nudge
(the echo's ±ε·g, added to the momentum after a step) is an extra source current: a triangular pulse of
the same width centred on the boundary, carrying the nudge as charge.

A pass is one transient analysis from given initial conditions (``.tran … uic``, the capacitor's
voltage and the inductor's current set with ``ic=``). The echo starts from the final state with the
capacitor voltage flipped and the inductor current kept (charge is the momentum), the drive replayed
backwards with the same sign.

How ngspice is run. Batch mode (``ngspice -b -r out.raw``, binary raw file), one process per pass with
every sample and channel in one netlist, and the two echoes of a pair in the *same* netlist. Batch mode
needs nothing but the Debian package, and the process start is small against the simulation of the
netlists a training step writes, so the shared library would save little (docs/physical.md). The two
echoes share one netlist for a reason beyond speed: ngspice then integrates both on the same time
points, so for this linear circuit the difference of the two echoes — RHEL's signal, ε·g small
against the states — is the simulator's linear response to the nudges, free of the noise two separate
step-size histories would add.

Reading states. ngspice writes its own time points (it lands exactly on the drive's corners, where it
restarts the integration, and takes steps of at most ``timestep`` between them). States at other
instants are interpolated with cubic Hermite polynomials whose slopes are the circuit's own equations
(dφ/dτ = v − R·i_L, dπ/dτ = I(τ) − i_L, from the saved v, i_L and the known source): fourth order in the
step, below the integrator's own second-order error. ``.options interp`` is not used: it interpolates
linearly (second order), and with a binary raw file ngspice 39 writes a corrupt file.

The learning rule. The circuit solves the continuous dynamics, so RHEL's estimate is the continuous one:
∂L/∂θ = −(1/2ε)·Σ_k ∫_step [∂θH̃(x₊) − ∂θH̃(x₋)] dτ with H̃ = δ·H, the integral over each step by
Gauss–Legendre quadrature at ``nodes`` instants inside the step (away from the nudge pulses at the
boundaries), the model's energy evaluated at the measured states — the leapfrog's step energy with the
same state in both kinetic slots is δ·H, so the core's ``echo_energy_half_difference`` does the work.
With no parasitics and a converged simulation this is the gradient of the circuit's own loss:
BPTT through ``ExactFlow`` (tests/test_circuit.py; docs/physical.md, "A circuit in the loop").
"""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, fields

import jax
import jax.numpy as jnp
import numpy as np

from ..core.gradients import echo_energy_half_difference, estimator_scale, nudges_after_each_step
from ..core.integrators import EchoResult
from .device import Measurement
from .exact import ExactFlow, check_linear
from .host import HostDevice
from .simulated import LINEAR_PHYSICS

METHODS = ("trap", "gear")
INSTALL_HINT = ("install it with `apt-get install ngspice` (Debian, Ubuntu), `brew install ngspice` (macOS) or "
                "from https://ngspice.sourceforge.io, or pass CircuitDevice(ngspice='/path/to/ngspice')")
# The share of a tank's capacitance 1/δ that couples it to its nudging voltage source.
COUPLING_FRACTION = 0.5
# In fixed-step mode the local-truncation-error test must never shorten a step: trtol scales its tolerance.
FIXED_STEP_TRTOL = 1e12


def _check_positive(name, value, *, integer=False, zero_ok=False):
    kind = int if integer else (int, float)
    ok = (not isinstance(value, bool) and isinstance(value, kind) and math.isfinite(value)
          and (value >= 0 if zero_ok else value > 0))
    if not ok:
        what = "an integer" if integer else "a finite number"
        raise ValueError(f"{name} must be {what} {'≥' if zero_ok else '>'} 0; got {value!r}")


def find_ngspice(executable: str = "ngspice") -> str:
    """The path of the ngspice executable, or a ``RuntimeError`` saying how to install it."""
    path = shutil.which(executable)
    if path is None:
        raise RuntimeError(f"CircuitDevice needs the circuit simulator ngspice, and {executable!r} was not found: "
                           f"{INSTALL_HINT}")
    return path


@dataclass(frozen=True, kw_only=True)
class CircuitDevice(HostDevice):
    """The linear HRU as LC tanks in ngspice (module docstring); takes the integrator's place.

    method: ngspice's integrator, "trap" (trapezoidal; time-reversible) or "gear" (backward
    differentiation, order ≤ ``order``; dissipative). timestep: the largest internal step, in drive
    steps. adaptive: False — every step is ``timestep`` (the truncation-error test is switched off with
    a huge ``trtol``), except where ngspice restarts at a drive corner; True — ngspice's step control
    with ``reltol``, ``abstol`` (A), ``vntol`` (V), ``chgtol`` (C) and ``trtol`` chooses the steps
    (``timestep`` stays the largest). series_resistance: ohms in series with every inductor (0: ideal
    tanks). transition: the width of a drive jump's ramp and of a nudge's pulse, in drive steps.
    nodes: Gauss–Legendre instants per step for RHEL's integral. steps_per_run: drive steps per
    transient analysis (a longer pass runs as several, each from the last one's final state: see
    :meth:`simulate`). ngspice: the executable. ``seed`` is
    unused (the simulation is deterministic); it is the base class's.
    """

    method: str = "trap"
    order: int = 2
    timestep: float = 0.05
    adaptive: bool = False
    reltol: float = 1e-3
    abstol: float = 1e-12
    vntol: float = 1e-6
    chgtol: float = 1e-14
    trtol: float = 7.0
    series_resistance: float = 0.0
    transition: float = 1e-4
    nodes: int = 4
    steps_per_run: int = 100
    ngspice: str = "ngspice"

    def __post_init__(self):
        super().__post_init__()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(map(repr, METHODS))} (ngspice's trapezoidal or "
                             f"Gear integrator); got {self.method!r}")
        _check_positive("order", self.order, integer=True)
        if not 1 <= self.order <= 6:
            raise ValueError(f"order must be an integer in [1, 6] (ngspice's maxord, Gear only); got {self.order}")
        if self.order != 2 and self.method != "gear":
            raise ValueError(f"order is Gear's maximum order: use method='gear' with order={self.order}")
        for name in ("timestep", "reltol", "abstol", "vntol", "chgtol", "trtol", "transition"):
            _check_positive(name, getattr(self, name))
        if self.timestep > 1:
            raise ValueError(f"timestep must be at most 1 (a drive step); got {self.timestep!r}")
        if self.transition >= 0.5:
            raise ValueError(f"transition must be < 0.5 of a drive step; got {self.transition!r}")
        if not isinstance(self.adaptive, bool):
            raise ValueError(f"adaptive must be True or False; got {self.adaptive!r}")
        if not self.adaptive:
            defaults = {f.name: f.default for f in fields(self)}
            changed = [n for n in ("reltol", "abstol", "vntol", "chgtol", "trtol") if getattr(self, n) != defaults[n]]
            if changed:
                raise ValueError(f"{', '.join(changed)} set{'s' if len(changed) == 1 else ''} ngspice's step control, "
                                 "which works only with adaptive=True (fixed steps: set timestep)")
        _check_positive("series_resistance", self.series_resistance, zero_ok=True)
        _check_positive("nodes", self.nodes, integer=True)
        _check_positive("steps_per_run", self.steps_per_run, integer=True)
        if not isinstance(self.ngspice, str) or not self.ngspice:
            raise ValueError(f"ngspice must be the name or path of the ngspice executable; got {self.ngspice!r}")

    def __repr__(self) -> str:
        """The settings that differ from the defaults: ``CircuitDevice(method='gear', timestep=0.01)``."""
        on = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
              if f.name != "seed" and getattr(self, f.name) != f.default]
        return f"CircuitDevice({', '.join(on)})"

    # --- the simulator ------------------------------------------------------------------------------
    def options_card(self) -> str:
        """The ``.options`` line of every netlist."""
        options = [f"method={self.method}"]
        if self.method == "gear":
            options.append(f"maxord={self.order}")
        if self.adaptive:
            options += [f"{n}={getattr(self, n):.17g}" for n in ("reltol", "abstol", "vntol", "chgtol", "trtol")]
        else:
            options.append(f"trtol={FIXED_STEP_TRTOL:.17g}")
        return ".options " + " ".join(options)

    def simulate(self, tanks: Tanks, drives, start, nudges, times):
        """Transient analyses of the tanks, ``steps_per_run`` drive steps each; states sampled at ``times``.

        drives (L, M): u per tank and step; start (φ, π) each (M,); nudges (L, M) or None: added to the
        momentum after each step (the last one to the final state); times (K,) in drive steps, in [0, L].
        Returns (φ, π) each (K, M) and the final state (φ, π) each (M,). A long pass runs as several
        analyses, each from the last one's final state: ngspice looks a piecewise-linear source's value up
        from its first point, so one analysis over L steps costs O(L²) (docs/physical.md).
        """
        length = drives.shape[0]
        times = np.asarray(times, np.float64)
        runs = -(-length // self.steps_per_run)
        which = np.minimum(np.floor(times / self.steps_per_run).astype(int), runs - 1)
        positions, momenta = np.empty((len(times), drives.shape[1])), np.empty((len(times), drives.shape[1]))
        state = tuple(np.asarray(s, np.float64) for s in start)
        for run in range(runs):
            first, last = run * self.steps_per_run, min((run + 1) * self.steps_per_run, length)
            part = None if nudges is None else nudges[first:last]
            source = Source.of(tanks, drives[first:last], part, self.transition)
            netlist = write_netlist(tanks, source, state, self.options_card(), self.timestep)
            trajectory = Trajectory.read(run_ngspice(netlist, find_ngspice(self.ngspice)), tanks, source, state)
            here = which == run
            positions[here], momenta[here] = trajectory.sample(times[here] - first)
            end_position, end_momentum = trajectory.sample(np.array([float(last - first)]))
            state = (end_position[0], end_momentum[0] + (0.0 if part is None else part[-1]))
        return positions, momenta, state

    # --- the Device protocol ------------------------------------------------------------------------
    def twin(self, *, exact: bool = False):
        """The circuit's continuous-time model, ``ExactFlow``: of the ideal tanks, or with ``exact=True`` of
        the tanks with their series resistance (ngspice's own integration error no twin knows)."""
        return ExactFlow(series_resistance=self.series_resistance if exact else 0.0)

    def run(self, ham, theta, drives, state, nudges, *, echo, run):
        check_linear(ham, repr(self))
        find_ngspice(self.ngspice)  # refused while tracing, with the way to install it
        return super().run(ham, theta, drives, state, nudges, echo=echo, run=run)

    def run_on_host(self, ham, theta, drives, state, nudges, *, echo, run, rng):
        """One pass; the ``Measurement``: φ at each step's end, φ at its middle, π at its start and end (in a
        nudged pass, π just after the preceding nudge's pulse and just before the next one)."""
        del echo, run, rng  # the circuit is the same in every pass, and deterministic
        length, batch, size = drives.shape[0], *state[0].shape
        tanks = Tanks.of(theta, batch, self.series_resistance)
        edge = 0.0 if nudges is None else 0.5 * self.transition
        steps = np.arange(length, dtype=np.float64)
        before = np.where(steps > 0, steps + edge, 0.0)
        after = np.where(steps < length - 1, steps + 1 - edge, float(length))
        times = np.concatenate([steps + 1, steps + 0.5, before, after])
        flat = lambda a: a.reshape(a.shape[0], -1)
        phi, pi, final = self.simulate(tanks, flat(drives), tuple(s.reshape(-1) for s in state),
                                       None if nudges is None else flat(nudges), times)
        shaped = lambda a: a.reshape(4, length, batch, size)
        phi, pi = shaped(phi), shaped(pi)
        return Measurement(phi[0], phi[1], pi[2], pi[3], tuple(f.reshape(batch, size) for f in final))

    def echo_pair_on_host(self, theta, drives, starts, nudges):
        """Both echoes in one netlist. drives (L, N, P) in echo order; starts (φ, π) each (2, N, P);
        nudges (2, L, N, P). Returns φ and π at the quadrature instants, each (2, L, J, N, P), and the
        final states, each (2, N, P)."""
        length, batch, size = drives.shape
        tanks = Tanks.of(theta, 2 * batch, self.series_resistance)
        instants, _ = quadrature(self.nodes)
        times = (np.arange(length)[:, None] + instants[None, :]).reshape(-1)
        pair = lambda a: np.moveaxis(a, 0, 1).reshape(length, -1)                       # (L, 2·N·P)
        phi, pi, final = self.simulate(tanks, np.concatenate([drives, drives], axis=1).reshape(length, -1),
                                       tuple(s.reshape(-1) for s in starts), pair(nudges), times)
        shaped = lambda a: np.moveaxis(a.reshape(length, self.nodes, 2, batch, size), 2, 0)
        return shaped(phi), shaped(pi), tuple(f.reshape(2, batch, size) for f in final)

    def echo(self, ham, rhel, rule, theta, drives, final_state, cotangents, final_state_cotangent=None):
        """The two nudged echoes in one simulation, and RHEL's continuous estimate at their measured states
        (module docstring). Echo step j undoes forward step L−1−j; after it the momentum gets ±ε·g_{L−2−j}."""
        check_linear(ham, repr(self))
        find_ngspice(self.ngspice)
        if final_state_cotangent is not None:
            raise ValueError(f"{self!r} runs whole sequences: its echo takes no final-state cotangent")
        signs = jnp.asarray([1.0, -1.0 if rhel.estimator == "two_sided" else 0.0], drives.dtype)
        nudges = rhel.eps * cotangents                                        # (L, N, P), forward order
        echo_drives = drives[::-1]
        echo_nudges = signs[:, None, None, None] * nudges_after_each_step(nudges)[::-1][None]
        position, momentum = final_state
        starts = (jnp.stack([position, position]), -momentum[None] + signs[:, None, None] * nudges[-1][None])
        samples, finals = self.echo_pair(theta, echo_drives, starts, echo_nudges)
        _, weights = quadrature(self.nodes)

        def body(acc, inputs):
            drive, phi, pi = inputs                                        # phi, pi: (2, J, N, P)
            g_drive = jnp.zeros_like(drive)
            for j, weight in enumerate(weights):
                states = [(phi[e, j], pi[e, j], pi[e, j]) for e in (0, 1)]   # δ·H at one instant
                g_theta, g_u = echo_energy_half_difference(ham, theta, *states, drive, rule)
                acc = jax.tree_util.tree_map(lambda a, g, w=weight: a + w * g, acc, g_theta)
                g_drive = g_drive + weight * g_u
            return acc, g_drive

        phi, pi = (jnp.moveaxis(s, 0, 1) for s in samples)                # (L, 2, J, N, P)
        acc = jax.tree_util.tree_map(jnp.zeros_like, theta)
        acc, drive_half_diffs = jax.lax.scan(body, acc, (echo_drives, phi, pi))
        scale = estimator_scale(rhel)
        end_state = tuple(0.5 * (f[0] + f[1]) for f in finals)
        return EchoResult(jax.tree_util.tree_map(lambda a: scale * a, acc), scale * drive_half_diffs[::-1],
                          end_state, None)

    def echo_pair(self, theta, drives, starts, nudges):
        """The callback behind :meth:`echo`: ((φ, π) at the quadrature instants, final states)."""
        length, batch, size = drives.shape
        dtype = drives.dtype
        sampled = jax.ShapeDtypeStruct((2, length, self.nodes, batch, size), dtype)
        final = jax.ShapeDtypeStruct((2, batch, size), dtype)
        treedef = jax.tree_util.tree_structure(theta)

        def on_host(theta_leaves, drives, starts, nudges):
            host = lambda a: np.asarray(a, np.float64)
            host_theta = jax.tree_util.tree_unflatten(treedef, [host(a) for a in theta_leaves])
            phi, pi, finals = self.echo_pair_on_host(host_theta, host(drives), tuple(map(host, starts)), host(nudges))
            cast = lambda a: np.asarray(a, dtype)
            return (cast(phi), cast(pi)), tuple(map(cast, finals))

        return jax.pure_callback(on_host, ((sampled, sampled), (final, final)), jax.tree_util.tree_leaves(theta),
                                 drives, tuple(starts), nudges, vmap_method="sequential")


def quadrature(nodes: int):
    """Gauss–Legendre instants in (0, 1) and their weights (summing to 1)."""
    points, weights = np.polynomial.legendre.leggauss(nodes)
    return 0.5 * (points + 1.0), 0.5 * weights


# --- the netlist --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tanks:
    """M tanks' element values: step δ, stiffness A, capacitance 1/δ, inductance 1/(δA) (inf where A = 0),
    series resistance R (ohms)."""

    step: np.ndarray
    stiffness: np.ndarray
    series_resistance: float

    @classmethod
    def of(cls, theta, copies: int, series_resistance: float) -> Tanks:
        """The tanks of ``copies`` samples of the linear HRU with parameters θ (P channels each), sample-major."""
        params = LINEAR_PHYSICS.parameters(theta)
        step, stiffness = (np.tile(np.asarray(params[k], np.float64), copies) for k in ("step", "stiffness"))
        return cls(step, stiffness, float(series_resistance))

    @property
    def capacitance(self):
        """The tank's whole capacitance, 1/δ: the tank capacitor and the coupling capacitor in parallel."""
        return 1.0 / self.step

    @property
    def coupling_capacitance(self):
        return COUPLING_FRACTION / self.step

    @property
    def has_inductor(self):
        return self.stiffness > 0

    @property
    def inductance(self):
        with np.errstate(divide="ignore"):
            return np.where(self.has_inductor, 1.0 / (self.step * self.stiffness), np.inf)


@dataclass(frozen=True)
class Source:
    """What drives the tanks, piecewise linear on ``times`` (T,): the source currents ``current`` (T, M)
    in amperes (δ·u), and the nudging voltages ``coupling`` (T, M) in volts, each behind a coupling
    capacitor."""

    times: np.ndarray
    current: np.ndarray
    coupling: np.ndarray

    @classmethod
    def of(cls, tanks: Tanks, drives, nudges, transition: float) -> Source:
        """δ·u with each jump a ramp of width ``transition`` centred on the boundary; each nudge (but the
        last, which lands on the final state) a step of nudge / C_c volts behind the coupling capacitor,
        ramped over the same instants: it injects exactly the nudge's charge."""
        length, tanks_count = drives.shape
        boundaries = np.arange(1, length, dtype=np.float64)
        half = 0.5 * transition
        times = np.concatenate([[0.0], np.stack([boundaries - half, boundaries, boundaries + half], 1).reshape(-1),
                                [float(length)]])

        def ramps(levels):  # levels (L, M): one value per step -> (T, M), the jumps ramped
            middle = 0.5 * (levels[:-1] + levels[1:])
            inner = np.stack([levels[:-1], middle, levels[1:]], 1).reshape(-1, tanks_count)
            return np.concatenate([levels[:1], inner, levels[-1:]])

        current = ramps(tanks.step * drives)
        if nudges is None:
            coupling = np.zeros_like(current)
        else:
            steps = np.cumsum(nudges[:-1] / tanks.coupling_capacitance, axis=0)
            coupling = ramps(np.concatenate([np.zeros((1, tanks_count)), steps]))
        return cls(times, current, coupling)

    def at(self, t):
        """The source currents at instants t (K,): (K, M)."""
        index = np.clip(np.searchsorted(self.times, t, side="right"), 1, len(self.times) - 1)
        t0, t1 = self.times[index - 1], self.times[index]
        s = np.clip((t - t0) / (t1 - t0), 0.0, 1.0)[:, None]
        return (1 - s) * self.current[index - 1] + s * self.current[index]

    def coupling_rate(self, t):
        """dV/dτ of the nudging voltages at instants t (K,) inside intervals of ``times``: (K, M)."""
        index = np.clip(np.searchsorted(self.times, t, side="right"), 1, len(self.times) - 1)
        width = (self.times[index] - self.times[index - 1])[:, None]
        return (self.coupling[index] - self.coupling[index - 1]) / width


def _number(x) -> str:
    return f"{x:.17g}"


def pwl_card(element: str, times: list, values) -> list:
    """The lines of a source element with a piecewise-linear value (continuation lines of 32 points)."""
    if not np.any(values):
        return [f"{element} 0"]
    pairs = [f"{t} {_number(v)}" for t, v in zip(times, values)]
    return [f"{element} pwl("] + ["+ " + " ".join(pairs[i:i + 32]) for i in range(0, len(pairs), 32)] + ["+ )"]


def write_netlist(tanks: Tanks, source: Source, start, options_card: str, timestep: float) -> str:
    """The netlist of one pass: the tanks from ``start`` (φ, π) each (M,), driven by ``source``."""
    position, momentum = (np.asarray(s, np.float64) for s in start)
    arrays = (source.current, source.coupling, position, momentum)
    if not all(np.all(np.isfinite(a)) for a in arrays):
        raise ValueError("CircuitDevice got a non-finite drive, nudge or state: the model has diverged")
    length = source.times[-1]
    times = [_number(t) for t in source.times]
    lines = [f"* hamecho CircuitDevice: {len(tanks.step)} LC tanks, {length:g} drive steps"]
    saves = []
    for m in range(len(tanks.step)):
        coupling, voltage = tanks.coupling_capacitance[m], momentum[m] / tanks.capacitance[m]
        lines.append(f"c{m} n{m} 0 {_number(tanks.capacitance[m] - coupling)} ic={_number(voltage)}")
        lines.append(f"cc{m} n{m} k{m} {_number(coupling)} ic={_number(voltage)}")
        lines += pwl_card(f"v{m} k{m} 0", times, source.coupling[:, m])
        if tanks.has_inductor[m]:
            inductance = tanks.inductance[m]
            end = f"r{m}" if tanks.series_resistance else "0"
            lines.append(f"l{m} n{m} {end} {_number(inductance)} ic={_number(position[m] / inductance)}")
            if tanks.series_resistance:
                lines.append(f"r{m} r{m} 0 {_number(tanks.series_resistance)}")
            saves.append(f"v(n{m}) i(l{m})")
        else:  # no spring: an ideal flux meter integrates the tank's voltage
            lines.append(f"g{m} 0 f{m} n{m} 0 1")
            lines.append(f"cf{m} f{m} 0 1 ic={_number(position[m])}")
            saves.append(f"v(n{m}) v(f{m})")
        lines += pwl_card(f"i{m} 0 n{m}", times, source.current[:, m])
    lines.append(options_card)
    lines.append(f".tran {_number(timestep)} {_number(length)} 0 {_number(timestep)} uic")
    lines += [".save " + " ".join(saves[i:i + 64]) for i in range(0, len(saves), 64)]
    lines.append(".end")
    return "\n".join(lines) + "\n"


# --- running ngspice and reading what it wrote ----------------------------------------------------------
def run_ngspice(netlist: str, executable: str) -> dict:
    """Run ``executable -b`` on the netlist; the vectors of its binary raw file, by lower-case name."""
    with tempfile.TemporaryDirectory(prefix="hamecho-ngspice-") as folder:
        circuit, raw = os.path.join(folder, "circuit.cir"), os.path.join(folder, "circuit.raw")
        with open(circuit, "w") as handle:
            handle.write(netlist)
        done = subprocess.run([executable, "-b", "-r", raw, circuit], capture_output=True, text=True, cwd=folder)
        failed = done.returncode != 0 or not os.path.exists(raw)
        if failed or "error" in done.stderr.lower():
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-12:])
            raise RuntimeError(f"ngspice failed (exit code {done.returncode}) on a CircuitDevice netlist:\n{tail}")
        with open(raw, "rb") as handle:
            return read_raw(handle.read())


def read_raw(data: bytes) -> dict:
    """The vectors of an ngspice binary raw file (one real-valued plot), by lower-case name."""
    marker = b"Binary:\n"
    at = data.find(marker)
    if at < 0:
        raise RuntimeError("ngspice wrote a raw file without binary data (expected 'Binary:')")
    header = data[:at].decode("latin-1").splitlines()
    fields_ = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in header if ":" in line}
    if "complex" in fields_.get("Flags", ""):
        raise RuntimeError("ngspice wrote complex data; CircuitDevice expects a transient (real) analysis")
    count, points = int(fields_["No. Variables"]), int(fields_["No. Points"])
    start = next(i for i, line in enumerate(header) if line.startswith("Variables:")) + 1
    names = [line.split()[1].lower() for line in header[start:start + count]]
    values = np.frombuffer(data, "<f8", count * points, at + len(marker)).reshape(points, count)
    return {name: values[:, i] for i, name in enumerate(names)}


@dataclass(frozen=True)
class Trajectory:
    """The tanks' states at ngspice's time points, with the slopes the circuit's equations give them."""

    time: np.ndarray           # (K,)
    position: np.ndarray       # (K, M)
    momentum: np.ndarray
    position_slope: np.ndarray
    momentum_slope: np.ndarray  # without the nudging voltages' share, which is
    coupling_slope: np.ndarray  # (K − 1, M): C_c·dV/dτ on each interval between the time points

    @classmethod
    def read(cls, vectors: dict, tanks: Tanks, source: Source, start) -> Trajectory:
        """φ = L·i_L (or the flux meter's voltage), π = v/δ; slopes v − R·i_L and I − i_L + C_c·dV/dτ. The initial state
        is put first when ngspice did not write the time 0 (it does not under ``uic``)."""
        time = vectors["time"]
        columns = range(len(tanks.step))
        voltage = np.stack([vectors[f"v(n{m})"] for m in columns], 1)
        current = np.stack([vectors[f"i(l{m})"] if tanks.has_inductor[m] else np.zeros_like(time)
                            for m in columns], 1)
        flux = np.stack([vectors[f"i(l{m})"] * tanks.inductance[m] if tanks.has_inductor[m] else vectors[f"v(f{m})"]
                         for m in columns], 1)
        if time[0] > 0:
            position, momentum = (np.asarray(s, np.float64) for s in start)
            time = np.concatenate([[0.0], time])
            voltage = np.concatenate([(momentum / tanks.capacitance)[None], voltage])
            inductance = np.where(tanks.has_inductor, tanks.inductance, 1.0)
            current = np.concatenate([np.where(tanks.has_inductor, position / inductance, 0.0)[None], current])
            flux = np.concatenate([position[None], flux])
        coupling = source.coupling_rate(0.5 * (time[1:] + time[:-1])) * tanks.coupling_capacitance
        return cls(time, flux, voltage * tanks.capacitance, voltage - tanks.series_resistance * current,
                   source.at(time) - current, coupling)

    def sample(self, times):
        """(φ, π) at the given instants, each (len(times), M): cubic Hermite between ngspice's points."""
        t = self.time
        index = np.clip(np.searchsorted(t, times, side="left"), 1, len(t) - 1)
        t0, t1 = t[index - 1], t[index]
        width = (t1 - t0)[:, None]
        s = ((times - t0) / (t1 - t0))[:, None]
        h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
        coupling = self.coupling_slope[index - 1]
        hermite = lambda y, dy, extra: (h00 * y[index - 1] + h10 * width * (dy[index - 1] + extra)
                                        + h01 * y[index] + h11 * width * (dy[index] + extra))
        return hermite(self.position, self.position_slope, 0.0), hermite(self.momentum, self.momentum_slope, coupling)
