"""What is swept: the knobs of ``hamecho.physical.SimulatedDevice``, their levels, and the device of one point.

Each knob is swept alone, the others off. ``device_for(knob, level, seed)`` builds the device of one
sweep point; ``KNOB_TITLES`` says in words what each knob is (the Markdown headings and the plots' axes).
"""
from __future__ import annotations

# knob -> levels. "repeats" runs at the noise level REPEATS_NOISE; "drift" is mismatch with drift=True;
# "damping" runs at every length of DAMPING_LENGTHS.
KNOB_LEVELS = {
    "noise": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
    "readout_noise": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2),
    "repeats": (1, 2, 4, 8, 16, 32),
    "mismatch": (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 1e-1),
    "drift": (0.0, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3),
    "bits": (8, 12, 16, 18, 20, 22, 24, 32, 52),
    "damping": (0.0, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0),
}
KNOBS = tuple(KNOB_LEVELS)
STOCHASTIC = ("noise", "readout_noise", "repeats", "mismatch", "drift")
REPEATS_NOISE = 1e-3
NOISE_EPS = (1.0, 10.0, 100.0)       # the noise sweep is run at each of these ε (the others at setup.eps)
DAMPING_LENGTHS = (50, 200)

KNOB_TITLES = {
    "noise": "thermal noise (std of the momentum kick per step)",
    "readout_noise": "readout noise (std on every measured value)",
    "repeats": f"echo pairs averaged, at noise {REPEATS_NOISE:g}",
    "mismatch": "fixed parameter mismatch in the echo (relative std)",
    "drift": "drifting parameter mismatch (fresh for every echo run; relative std)",
    "bits": "bits per state variable (full scale ±64)",
    "damping": "damping γ (friction −γπ)",
}

# Training: (label, knob, level) per configuration; knob None is the ideal device, "frozen" the ideal device
# with every gradient that passes through an echo zeroed.
TRAINING_LEVELS = (
    ("ideal", None, None), ("ideal, no echo gradients", "frozen", None),
    ("noise 1e-4", "noise", 1e-4), ("noise 1e-3", "noise", 1e-3), ("noise 1e-2", "noise", 1e-2),
    ("noise 1e-2, 16 echoes", "noise+repeats", (1e-2, 16)),
    ("readout 1e-3", "readout_noise", 1e-3), ("readout 1e-2", "readout_noise", 1e-2),
    ("mismatch 1e-2", "mismatch", 1e-2), ("mismatch 1e-1", "mismatch", 1e-1),
    ("drift 1e-4", "drift", 1e-4), ("drift 1e-3", "drift", 1e-3),
    ("bits 12", "bits", 12), ("bits 16", "bits", 16), ("bits 20", "bits", 20), ("bits 24", "bits", 24),
    ("damping 0.01", "damping", 0.01), ("damping 0.1", "damping", 0.1), ("damping 1", "damping", 1.0),
)


def check_knob(knob: str) -> None:
    """``ValueError`` unless ``knob`` is one of ``KNOBS``."""
    if knob not in KNOB_LEVELS:
        raise ValueError(f"knob must be one of {', '.join(map(repr, KNOBS))}; got {knob!r}")


def device_for(knob: str | None, level, seed: int = 0, base: dict | None = None):
    """The device of one sweep point: ``SimulatedDevice`` with the one knob set (None: ``IdealDevice``).

    ``knob`` is one of ``KNOBS``, None or "frozen" (the ideal device), or "noise+repeats" (level: (noise,
    repeats)); ``base``: knobs set at every point.
    """
    from ...physical import IdealDevice, SimulatedDevice

    knobs = dict(base or {})
    if knob in (None, "frozen"):
        return IdealDevice()
    if knob == "repeats":
        knobs.update(noise=REPEATS_NOISE, repeats=int(level))
    elif knob == "noise+repeats":
        knobs.update(noise=level[0], repeats=int(level[1]))
    elif knob == "drift":
        knobs.update(mismatch=level, drift=True)
    elif knob == "bits":
        knobs.update(bits=int(level))
    else:
        check_knob(knob)
        knobs[knob] = level
    return SimulatedDevice(seed=seed, **knobs)
