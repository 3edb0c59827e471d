"""The learning rules the robustness study runs on a device: where a rule other than RHEL plugs in.

A rule is a name and the gradient strategy it stands for at a given nudge size ε (fitted to the device where
the rule needs it): the gradient sweeps (``gradients.gradient_sweep``), the training runs
(``training.train_on_device``) and the comparison of rules (``comparison``) compute every gradient as
``value_and_grad(..., gradient=
rule.gradient(eps, device), integrator=device)`` / ``train_step(...)`` and record ``rule.name`` in their
rows. The three rules of issue #26:

- ``rhel``: ``hamecho.RHEL(eps=ε)``, a forward pass and two echoes on the device;
- ``physics_aware``: ``hamecho.PhysicsAware`` (Wright et al. 2022) with the twin a modeller would have: the
  model's leapfrog with the device's friction (``DampedLeapfrog``; a loss one measures once and fits) but
  not its parameter errors (``model_error``: the twin is wrong there, which is what that knob measures);
- ``spsa``: ``hamecho.SPSA`` (Spall 1992) with ``SPSA_PERTURBATIONS`` perturbations of size
  ``SPSA_SCALE`` (ε is RHEL's nudge and does not apply; :func:`spsa_rule` makes other settings).

A rule of one's own is one more ``LearningRule`` (a strategy under ``AbstractGradient`` that
``check_compatible`` accepts with devices), passed as ``rule=`` or listed in ``rules=``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ...core.gradients import RHEL, SPSA, AbstractGradient, PhysicsAware

SPSA_PERTURBATIONS = 1   # two device passes per perturbation: with 1, an SPSA update costs what an RHEL one does
SPSA_SCALE = 1e-3


@dataclass(frozen=True)
class LearningRule:
    """A learning rule on a device: ``name`` (recorded in every row), ``strategy``, ε → the gradient strategy
    (``hamecho.RHEL(eps=ε)`` for RHEL), and ``for_device`` (optional), (strategy, device) → the strategy
    fitted to that device (the physics-aware rule's twin)."""

    name: str
    strategy: Callable[[float], AbstractGradient]
    for_device: Callable[[AbstractGradient, object], AbstractGradient] | None = None

    def gradient(self, eps: float, device=None) -> AbstractGradient:
        """The gradient strategy at nudge size ``eps`` on ``device`` (None: no device known)."""
        gradient = self.strategy(eps)
        return gradient if self.for_device is None or device is None else self.for_device(gradient, device)

    def passes_per_step(self, eps: float, device, cores: int) -> int:
        """Device passes one update costs with ``cores`` cores on ``device``."""
        return self.gradient(eps, device).passes_per_step(device, cores=cores)


def modelled_twin(device):
    """The twin the physics-aware rule uses on ``device``: the leapfrog, with the device's damping if it has any;
    on a circuit with lossy inductors, its continuous-time model with that series resistance (``twin(exact=True)``);
    otherwise the device's own twin (None)."""
    from ...physical import DampedLeapfrog

    damping = getattr(device, "damping", 0.0)
    if damping:
        return DampedLeapfrog(damping=damping)
    return device.twin(exact=True) if getattr(device, "series_resistance", 0.0) else None


def spsa_rule(n_perturbations: int = SPSA_PERTURBATIONS, scale: float = SPSA_SCALE) -> LearningRule:
    """The SPSA rule with these settings (named ``spsa``)."""
    return LearningRule("spsa", lambda eps: SPSA(n_perturbations=n_perturbations, scale=scale))


RHEL_RULE = LearningRule("rhel", lambda eps: RHEL(eps=eps))
PHYSICS_AWARE_RULE = LearningRule("physics_aware", lambda eps: PhysicsAware(),
                                  for_device=lambda gradient, device: PhysicsAware(twin=modelled_twin(device)))
SPSA_RULE = spsa_rule()
RULES = {rule.name: rule for rule in (RHEL_RULE, PHYSICS_AWARE_RULE, SPSA_RULE)}
