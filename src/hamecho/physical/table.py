"""``device_from_table``: a device from a TOML-style table (the ``[device]`` table of a configuration).

    [device]
    kind = "simulated"        # "ideal" or "simulated"
    noise = 1e-3              # the SimulatedDevice knobs, each optional (defaults: off)
    readout_noise = 0.0
    mismatch = 0.0
    drift = false
    bits = 16                 # omit for float64 states
    full_scale = 8.0
    damping = 0.0
    repeats = 4
    seed = 0

Every key is checked: an unknown key, a missing or unknown ``kind``, a knob given to the ideal device or a
value of the wrong type raises ``ValueError`` naming the key and what it allows.
"""
from __future__ import annotations

from dataclasses import fields

from .device import Device, IdealDevice
from .simulated import SimulatedDevice

KINDS = ("ideal", "simulated")
SIMULATED_KEYS = tuple(f.name for f in fields(SimulatedDevice))
_KNOB_TYPES = {"drift": "true or false", "bits": "an integer in [2, 53]", "repeats": "an integer ≥ 1",
               "seed": "an integer ≥ 0"}


def device_from_table(table: dict, *, where: str = "device") -> Device:
    """The device a ``[device]`` table describes (module docstring); ``where`` names the table in messages."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table (keys kind, {', '.join(SIMULATED_KEYS)}); got {table!r}")
    if "kind" not in table:
        raise ValueError(f"{where}.kind is missing: one of {', '.join(map(repr, KINDS))}")
    kind = table["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    knobs = {k: v for k, v in table.items() if k != "kind"}
    allowed = () if kind == "ideal" else SIMULATED_KEYS
    for key in knobs:
        if key not in allowed:
            if key in SIMULATED_KEYS:
                raise ValueError(f"{where}.{key}: the ideal device has no knobs; use kind = \"simulated\"")
            raise ValueError(f"{where}.{key} is not a device key; the keys are kind, {', '.join(SIMULATED_KEYS)}")
    if kind == "ideal":
        return IdealDevice()
    if isinstance(knobs.get("full_scale"), int) and not isinstance(knobs["full_scale"], bool):
        knobs["full_scale"] = float(knobs["full_scale"])
    try:
        return SimulatedDevice(**knobs)
    except ValueError as error:
        key = str(error).split(" ", 1)[0]
        hint = f" ({_KNOB_TYPES[key]})" if key in _KNOB_TYPES else ""
        raise ValueError(f"{where}.{error}{hint}") from None
