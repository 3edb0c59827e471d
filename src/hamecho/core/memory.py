"""The base of the memory strategies: what a strategy declares, for ``choices.check_compatible`` to read.

The third family beside ``gradients.AbstractGradient`` and ``integrators.AbstractIntegrator``. The
strategies themselves run model code (a block, or the whole stack), so they live with the models:
``RecomputeBlocks`` and ``TimeChunks`` in ``hamecho.nn.memory``, ``Streaming`` in ``hamecho.nn.streaming``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class AbstractMemory:
    """Base class of the memory strategies (hashable values, static under ``jax.jit``).

    ``carries_state``: the strategy runs each HRU core from a given starting state (needs an integrator
    that ``starts_from_state``). ``whole_stack``: it runs the whole HSSM stack (``run_stack``, called by
    ``HSSM.apply``) rather than one block at a time, so it needs an integrator that ``streams`` and a norm
    local in time, and cannot run a block alone. ``needs_rhel``: it works with RHEL only.
    ``hamecho.core.choices.check_compatible`` reads all three.
    """

    carries_state: ClassVar[bool] = False
    whole_stack: ClassVar[bool] = False
    needs_rhel: ClassVar[bool] = False

    def run_block(self, block, x, choices, *, train: bool, key=None):
        """x (L, N, H) → (block output (L, N, H), norm statistics), as ``Block.forward`` returns them."""
        raise NotImplementedError(f"{type(self).__name__} does not run a block alone")

    def run_stack(self, model, x, choices, *, train: bool, key=None):
        """x (N, L, in_dim) → (outputs, norm statistics per block), as ``HSSM.apply`` returns them
        (``whole_stack`` strategies only)."""
        raise NotImplementedError(f"{type(self).__name__} does not run a whole stack")
