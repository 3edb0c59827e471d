"""hamecho: Recurrent Hamiltonian Echo Learning (RHEL) for Hamiltonian recurrent models."""
__version__ = "0.1.0"
