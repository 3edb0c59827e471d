"""Argument types shared by the commands: each turns one command-line word into a checked value."""
from __future__ import annotations

import argparse
import inspect
import math


def positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def positive_floats(text: str) -> list[float]:
    """Comma-separated positive numbers, e.g. ``1e-3,0.1,1``."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values or any(not (math.isfinite(v) and v > 0) for v in values):
        raise argparse.ArgumentTypeError(f"values must be positive numbers, got {text!r}")
    return values


def defaults_of(*functions) -> dict:
    """The keyword defaults of library functions, so that a command's defaults are written once, there."""
    return {name: p.default for f in functions for name, p in inspect.signature(f).parameters.items()
            if p.default is not inspect.Parameter.empty}
