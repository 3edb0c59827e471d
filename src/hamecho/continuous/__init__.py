"""Continuous-time RHEL for physical Hamiltonian systems (see ``systems``)."""
from .systems import *  # noqa: F401,F403
from .systems import N_OSC, __all__  # noqa: F401
