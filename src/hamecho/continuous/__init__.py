"""Continuous-time Recurrent Hamiltonian Echo Learning (RHEL) for physical Hamiltonian systems.

A ``HamiltonianSystem`` (``system``: a time-reversal-symmetric ``H(phi, pi, theta, u)``, an input signal
``u(t)`` and a running loss ``ell(phi, t)``) is integrated on ``[-T, 0]`` by a symmetric integrator
(``integrators``: the leapfrog for a separable ``H``, the implicit midpoint rule otherwise). Three ways of
computing ``dL/dtheta`` and ``dL/d(phi0, pi0)`` of the discretised loss, which agree to round-off:

* ``rhel.rhel_gradient`` -- the Hamiltonian echo (takes a ``hamecho.RHEL``);
* ``adjoint.adjoint_gradient`` -- the adjoint state method along the stored forward trajectory;
* ``autodiff.autodiff_gradient`` -- reverse-mode autodiff through the discretised forward pass.

``oscillators`` holds the paper's toy (six coupled harmonic oscillators). See docs/continuous.md.
"""
from .adjoint import adjoint_gradient
from .autodiff import autodiff_gradient, flatten, relative_error
from .integrators import discrete_loss, integrate, loss_weights, step, time_grid
from .oscillators import N_OSC, OscillatorTask, oscillator_hamiltonian, oscillator_params, parameter_names
from .rhel import DEFAULT_RHEL, echo, retrace_error, rhel_gradient
from .system import GradientResult, HamiltonianSystem, Trajectory, check_separable, check_time_reversal

__all__ = [
    "HamiltonianSystem",
    "Trajectory",
    "GradientResult",
    "check_time_reversal",
    "check_separable",
    "time_grid",
    "loss_weights",
    "step",
    "integrate",
    "discrete_loss",
    "echo",
    "retrace_error",
    "rhel_gradient",
    "DEFAULT_RHEL",
    "adjoint_gradient",
    "autodiff_gradient",
    "relative_error",
    "flatten",
    "oscillator_hamiltonian",
    "OscillatorTask",
    "oscillator_params",
    "parameter_names",
    "N_OSC",
]
