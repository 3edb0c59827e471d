"""``device_from_table``: a device from a TOML-style table (the ``[device]`` table of a configuration).

    [device]
    kind = "simulated"        # "ideal", "simulated" or "circuit"
    noise = 1e-3              # the SimulatedDevice knobs, each optional (defaults: off)
    readout_noise = 0.0
    mismatch = 0.0
    drift = false
    bits = 16                 # omit for float64 states
    full_scale = 8.0
    damping = 0.0
    repeats = 4
    seed = 0

    [device]
    kind = "circuit"          # the LC bank in ngspice: the CircuitDevice keywords, each optional
    method = "trap"           # or "gear" (with order = 2..6)
    timestep = 0.05           # the largest internal step, in drive steps
    adaptive = false          # true: ngspice's step control with reltol, abstol, vntol, chgtol, trtol
    series_resistance = 0.0   # ohms in series with every inductor

Every key is checked: an unknown key, a missing or unknown ``kind``, a knob given to the ideal device or a
value of the wrong type raises ``ValueError`` naming the key and what it allows.
"""
from __future__ import annotations

from dataclasses import fields

from .circuit import CircuitDevice
from .device import Device, IdealDevice
from .simulated import SimulatedDevice

KINDS = ("ideal", "simulated", "circuit")
SIMULATED_KEYS = tuple(f.name for f in fields(SimulatedDevice))
CIRCUIT_KEYS = tuple(f.name for f in fields(CircuitDevice) if f.name != "seed")
KEYS = {"ideal": (), "simulated": SIMULATED_KEYS, "circuit": CIRCUIT_KEYS}
DEVICES = {"simulated": SimulatedDevice, "circuit": CircuitDevice}
_FLOAT_KEYS = ("full_scale", "timestep", "reltol", "abstol", "vntol", "chgtol", "trtol", "series_resistance",
               "transition")
_KNOB_TYPES = {"drift": "true or false", "bits": "an integer in [2, 53]", "repeats": "an integer ≥ 1",
               "seed": "an integer ≥ 0", "adaptive": "true or false", "order": "an integer in [1, 6]",
               "nodes": "an integer ≥ 1", "steps_per_run": "an integer ≥ 1"}


def device_from_table(table: dict, *, where: str = "device") -> Device:
    """The device a ``[device]`` table describes (module docstring); ``where`` names the table in messages."""
    if not isinstance(table, dict):
        raise ValueError(f"{where} must be a table (keys kind and the device's keywords); got {table!r}")
    if "kind" not in table:
        raise ValueError(f"{where}.kind is missing: one of {', '.join(map(repr, KINDS))}")
    kind = table["kind"]
    if kind not in KINDS:
        raise ValueError(f"{where}.kind must be one of {', '.join(map(repr, KINDS))}; got {kind!r}")
    knobs = {k: v for k, v in table.items() if k != "kind"}
    every_key = tuple(dict.fromkeys(SIMULATED_KEYS + CIRCUIT_KEYS))
    for key in knobs:
        if key not in KEYS[kind]:
            owners = [name for name in ("simulated", "circuit") if key in KEYS[name]]
            if owners and kind == "ideal":
                raise ValueError(f"{where}.{key}: the ideal device has no knobs; use kind = {owners[0]!r}")
            if owners:
                raise ValueError(f"{where}.{key}: the {kind} device has no such key; it belongs to kind = "
                                 f"{' or '.join(repr(o) for o in owners)}")
            keys = KEYS[kind] or every_key
            raise ValueError(f"{where}.{key} is not a device key; the keys are kind, {', '.join(keys)}")
    if kind == "ideal":
        return IdealDevice()
    for key in _FLOAT_KEYS:
        if isinstance(knobs.get(key), int) and not isinstance(knobs[key], bool):
            knobs[key] = float(knobs[key])
    try:
        return DEVICES[kind](**knobs)
    except ValueError as error:
        key = str(error).split(" ", 1)[0].rstrip(",")
        hint = f" ({_KNOB_TYPES[key]})" if key in _KNOB_TYPES else ""
        raise ValueError(f"{where}.{error}{hint}") from None
