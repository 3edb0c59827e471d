"""The learning rules the robustness study runs on a device: where a rule other than RHEL plugs in.

A rule is a name and the gradient strategy it stands for at a given nudge (or perturbation) size ε:
the gradient sweeps (``gradients.gradient_sweep``) and the training runs (``training.train_on_device``)
compute every gradient as ``value_and_grad(..., gradient=rule.gradient(eps), integrator=device)`` /
``train_step(...)`` and record ``rule.name`` in their rows. A new rule that takes the device in the
integrator's place (a strategy under ``hamecho.core.gradients.AbstractGradient``, accepted with devices
by ``check_compatible``) is one more entry here::

    SPSA_RULE = LearningRule("spsa", lambda eps: SPSA(perturbation=eps, ...))

and ``robustness(rule=SPSA_RULE)`` runs the same sweeps and training with it.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...core.gradients import RHEL, AbstractGradient


@dataclass(frozen=True)
class LearningRule:
    """A learning rule on a device: ``name`` (recorded in every row) and ``strategy``, ε → the gradient
    strategy (``hamecho.RHEL(eps=ε)`` for RHEL)."""

    name: str
    strategy: Callable[[float], AbstractGradient]

    def gradient(self, eps: float) -> AbstractGradient:
        """The gradient strategy at nudge size ``eps``."""
        return self.strategy(eps)


RHEL_RULE = LearningRule("rhel", lambda eps: RHEL(eps=eps))
RULES = {rule.name: rule for rule in (RHEL_RULE,)}
