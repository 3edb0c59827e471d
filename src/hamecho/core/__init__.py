"""The engine: Hamiltonians, integrators (each with its echo), gradient methods, and the core that joins them.

    hamiltonians.py   separable energies H = T(π) + V(φ; u), the time-reversal contract, the paper's two HRUs
    gradients.py      RHEL and BPTT (strategy objects) and RHEL's ± estimator arithmetic
    integrators.py    the leapfrog step and Leapfrog (sequential scan) with its echo; the integrator base class
    affine.py         AffineLeapfrog: the parallel scan of an affine Hamiltonian, with its echo
    fixed_point.py    FixedPointLeapfrog: the exactly reversible int64 grid, with its echo
    choices.py        the one place where choices are checked together and defaults ("auto") are resolved
    engine.py         hamiltonian_core (one custom VJP), echo_pass, retrace_error
"""
from .affine import AffineLeapfrog
from .choices import Choices, check_compatible
from .engine import echo_pass, hamiltonian_core, relative_retrace_error, retrace_error, run_core
from .fixed_point import FixedPointLeapfrog
from .gradients import BPTT, RHEL, AbstractGradient
from .hamiltonians import LINEAR_HAMILTONIAN, NONLINEAR_HAMILTONIAN, SeparableHamiltonian
from .integrators import AbstractIntegrator, Leapfrog

__all__ = ["AbstractGradient", "AbstractIntegrator", "AffineLeapfrog", "BPTT", "Choices", "FixedPointLeapfrog",
           "LINEAR_HAMILTONIAN", "Leapfrog", "NONLINEAR_HAMILTONIAN", "RHEL", "SeparableHamiltonian",
           "check_compatible", "echo_pass", "hamiltonian_core", "relative_retrace_error", "retrace_error", "run_core"]
