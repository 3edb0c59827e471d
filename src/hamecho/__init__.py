"""hamecho: Hamiltonian recurrent models trained by Recurrent Hamiltonian Echo Learning (RHEL)."""
__version__ = "0.1.0"

from .core.echo import CoreOptions, hamiltonian_core, retrace_error  # noqa: E402
from .core.hamiltonians import SeparableHamiltonian  # noqa: E402
from .nn.layers import HRU, LinearHRU, NonlinearHRU  # noqa: E402
from .nn.hssm import HSSM, cast, predict, value_and_grad  # noqa: E402

__all__ = ["CoreOptions", "HRU", "HSSM", "LinearHRU", "NonlinearHRU", "SeparableHamiltonian", "cast",
           "hamiltonian_core", "predict", "retrace_error", "value_and_grad", "__version__"]
