"""Typed training configurations: TOML files validated on load, with command-line overrides.

A configuration is a TOML file with three tables and two optional top-level keys::

    name = "linear/JapaneseVowels"   # optional; default: the file's path under configs/, without .toml
    out = "runs"                      # optional; where results go (``--out`` overrides)

    [data]                            # what hamecho.data.load() gets
    name = "uea/JapaneseVowels"
    time_channel = false

    [model]                           # the HSSM
    hru = "linear"
    hidden = 64
    state = 16
    blocks = 4

    [train]                           # the loop
    lr = 1e-3
    batch_size = 32
    steps = 2000
    ...

Every key has a declared type and, where it matters, a range or a set of allowed values (see the
``*_FIELDS`` tables below and ``docs/training.md``). Loading fails with :class:`ConfigError` (a
``ValueError``) naming the file, the key and what is allowed, for: unknown tables or keys, wrong
types, missing required keys, out-of-range values and malformed dataset names. Nothing is ever
evaluated as code; command-line values are parsed as TOML literals.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError", "DataConfig", "ModelConfig", "TrainConfig", "Config", "load_config", "config_from_dict",
    "parse_override", "PAPER_SEEDS", "ALGOS", "DTYPES",
]

from ..core.gradients import DIFFERENCES, ESTIMATORS
from ..core.integrators import CORE_DTYPES
from ..keywords import ALGOS, INTEGRATORS, CoreOptions

DTYPES = ("float32", "float64")
HRUS = ("linear", "nonlinear")
PAPER_SEEDS = (2345, 3456, 4567, 5678, 6789)
SYNTHETIC = ("first5", "ppg")


class ConfigError(ValueError):
    """A configuration is invalid; the message names the source, the key and what is allowed."""


# --- field specifications ---------------------------------------------------------------------------
# Each field: (type, default, check). type is one of "str", "int", "float", "bool", "int_list", "str_list".
# default REQUIRED means the key must be present. check(value) returns an error text or None.

REQUIRED = object()


def _positive(value):
    return None if value > 0 else "must be > 0"


def _non_negative(value):
    return None if value >= 0 else "must be >= 0"


def _positive_finite(value):
    return None if (math.isfinite(value) and value > 0) else "must be a finite number > 0"


def _one_of(allowed):
    def check(value):
        return None if value in allowed else f"must be one of {', '.join(map(repr, allowed))}"
    return check


def _subset_of(allowed):
    def check(values):
        if not values:
            return f"must be a non-empty list of {', '.join(map(repr, allowed))}"
        bad = [v for v in values if v not in allowed]
        if bad:
            return f"has {bad[0]!r}; allowed values are {', '.join(map(repr, allowed))}"
        if len(set(values)) != len(values):
            return "must not repeat a value"
        return None
    return check


def _seeds(values):
    if not values:
        return "must be a non-empty list of integers"
    if len(set(values)) != len(values):
        return "must not repeat a seed"
    if any(v < 0 for v in values):
        return "must be integers >= 0"
    return None


def _multiple_of_128(value):
    return None if value > 0 and value % 128 == 0 else "must be a positive multiple of 128"


def _dataset_name(value):
    text = value.strip()
    low = text.lower()
    if low in ("ppg", "ppg-dalia", "ppg_dalia", "fashion-mnist", "fashion_mnist", "fashionmnist"):
        return None
    kind, sep, rest = text.partition("/")
    if sep and kind.lower() in ("uea", "ucr") and rest and "/" not in rest:
        return None
    if sep and kind.lower() == "synthetic":
        if rest.lower() in SYNTHETIC:
            return None
        return f"synthetic task {rest!r} is unknown; allowed: {', '.join('synthetic/' + s for s in SYNTHETIC)}"
    return ("must be a dataset name: uea/<Name>, ucr/<Name>, ppg, fashion-mnist, "
            f"{', '.join('synthetic/' + s for s in SYNTHETIC)}")


DATA_FIELDS = {
    "name": ("str", REQUIRED, _dataset_name),
    "time_channel": ("bool", False, None),
    "length": ("int", None, _positive),
    "num_samples": ("int", None, lambda v: None if v >= 3 else "must be >= 3"),
    "data_dir": ("str", None, None),
    "split_dir": ("str", None, None),
    "ppg_window": ("int", 49_920, _multiple_of_128),
    "ppg_stride": ("int", 4_992, _multiple_of_128),
}

MODEL_FIELDS = {
    "hru": ("str", REQUIRED, _one_of(HRUS)),
    "hidden": ("int", 64, _positive),
    "state": ("int", 16, _positive),
    "blocks": ("int", 6, _positive),
    "step": ("float", 1e-4, _positive_finite),
}

TRAIN_FIELDS = {
    "lr": ("float", REQUIRED, _positive_finite),
    "batch_size": ("int", 32, _positive),
    "steps": ("int", 100_000, _positive),
    "eval_every": ("int", 1_000, _positive),
    "early_stopping": ("bool", True, None),
    "patience": ("int", 10, _non_negative),
    "seeds": ("int_list", list(PAPER_SEEDS), _seeds),
    "algos": ("str_list", ["bptt", "rhel"], _subset_of(ALGOS)),
    "eps": ("float", 0.1, _positive_finite),
    "estimator": ("str", "two_sided", _one_of(ESTIMATORS)),
    "difference": ("str", "auto", _one_of(DIFFERENCES)),
    "dtype": ("str", "float32", _one_of(DTYPES)),
    "core_dtype": ("str", "float64", _one_of(CORE_DTYPES)),
    "recompute_blocks": ("bool", False, None),
    "block_chunk": ("int", 0, _non_negative),
    "integrator": ("str", "float", _one_of(INTEGRATORS)),
    "fraction_bits": ("int", 32, lambda v: None if 1 <= v <= 62 else "must be between 1 and 62"),
    "eval_batch_size": ("int", 256, _positive),
    "eval_train": ("bool", False, None),
    "time_limit_s": ("float", None, _positive_finite),
}

TOP_FIELDS = {
    "name": ("str", None, lambda v: None if v.strip() and ".." not in v and not v.startswith("/")
             else "must be a non-empty relative name without '..'"),
    "out": ("str", "runs", lambda v: None if v.strip() else "must be a non-empty path"),
}

SECTIONS = {"data": DATA_FIELDS, "model": MODEL_FIELDS, "train": TRAIN_FIELDS}


# --- the typed configuration ------------------------------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    name: str
    time_channel: bool = False
    length: int | None = None
    num_samples: int | None = None
    data_dir: str | None = None
    split_dir: str | None = None
    ppg_window: int = 49_920
    ppg_stride: int = 4_992


@dataclass(frozen=True)
class ModelConfig:
    hru: str
    hidden: int = 64
    state: int = 16
    blocks: int = 6
    step: float = 1e-4


@dataclass(frozen=True)
class TrainConfig:
    lr: float
    batch_size: int = 32
    steps: int = 100_000
    eval_every: int = 1_000
    early_stopping: bool = True
    patience: int = 10
    seeds: tuple[int, ...] = PAPER_SEEDS
    algos: tuple[str, ...] = ("bptt", "rhel")
    eps: float = 0.1
    estimator: str = "two_sided"
    difference: str = "auto"
    dtype: str = "float32"
    # Precision the Hamiltonian cores integrate in: "float64" (default; the model and the stored drives keep
    # ``dtype``, ~+20 % step time, removes float32 phase drift on long sequences) or "input" (= ``dtype``).
    core_dtype: str = "float64"
    # Memory for long sequences: keep only each block's input per step, recompute the block in the backward
    # pass (one more forward per block; README "Speed and memory").
    recompute_blocks: bool = False
    # Memory for long sequences: run every block over time chunks of this many steps, each recomputed in the
    # backward pass, so a block keeps only its input (0: off; README "Speed and memory").
    block_chunk: int = 0
    # "fixed_point": exactly reversible cores on an int64 grid of 2**-fraction_bits (RHEL only; README).
    integrator: str = "float"
    fraction_bits: int = 32
    eval_batch_size: int = 256
    eval_train: bool = False
    time_limit_s: float | None = None


@dataclass(frozen=True)
class Config:
    """A validated configuration. ``source`` is where it came from (for messages only)."""

    name: str
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    out: str = "runs"
    source: str = field(default="<dict>", compare=False)

    def to_dict(self) -> dict:
        """Plain JSON/TOML-compatible dict (None values dropped), the form stored in results."""
        def clean(obj):
            return {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(obj).items() if v is not None}
        return {"name": self.name, "out": self.out, "data": clean(self.data), "model": clean(self.model),
                "train": clean(self.train)}

    def run_fingerprint(self) -> str:
        """Hash of everything that changes the outcome of one (algo, seed) run.

        Excludes the seed and algorithm lists (a run is one of each), where results go, where the data
        lives, and the time limit; a checkpoint or result is reused only when this hash matches.
        """
        d = self.to_dict()
        for key in ("name", "out"):
            d.pop(key)
        for key in ("data_dir", "split_dir"):
            d["data"].pop(key, None)
        for key in ("seeds", "algos", "time_limit_s"):
            d["train"].pop(key, None)
        if not d["train"].get("block_chunk"):
            d["train"].pop("block_chunk", None)  # off: fingerprints of runs made before the option stay valid
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **sections) -> Config:
        """A copy with whole sections or fields replaced, e.g. ``cfg.replace(train={"steps": 10})``,
        validated again."""
        raw = self.to_dict()
        for key, value in sections.items():
            if isinstance(value, dict) and key in SECTIONS:
                raw[key] = {**raw[key], **value}
            else:
                raw[key] = value
        return config_from_dict(raw, source=self.source, default_name=self.name)


# --- validation -------------------------------------------------------------------------------------

_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "int_list": "a list of integers", "str_list": "a list of strings"}


def _type_name(value) -> str:
    return {bool: "boolean", int: "integer", float: "float", str: "string", list: "list", dict: "table"}.get(
        type(value), type(value).__name__)


def _coerce(kind: str, value):
    """The value converted to ``kind``, or raise TypeError. Integers are accepted where floats are."""
    if kind == "str":
        if isinstance(value, str):
            return value
    elif kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind == "int_list":
        if isinstance(value, int) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            return tuple(value)
    elif kind == "str_list":
        if isinstance(value, str):
            value = [value]
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return tuple(value)
    raise TypeError


def _validate_table(raw: dict, fields: dict, where: str, source: str) -> dict:
    allowed = ", ".join(fields)
    for key in raw:
        if key not in fields:
            raise ConfigError(f"{source}: unknown key {key!r} in {where}; allowed keys: {allowed}")
    values = {}
    for key, (kind, default, check) in fields.items():
        name = f"{where}.{key}" if where != "the top level" else key
        if key not in raw:
            if default is REQUIRED:
                raise ConfigError(f"{source}: missing required key {name} ({_TYPE_WORDS[kind]})")
            values[key] = tuple(default) if isinstance(default, list) else default
            continue
        try:
            value = _coerce(kind, raw[key])
        except TypeError:
            raise ConfigError(f"{source}: {name} must be {_TYPE_WORDS[kind]}; got {raw[key]!r} "
                              f"({_type_name(raw[key])})") from None
        problem = check(value) if check is not None else None
        if problem:
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{source}: {name} {problem}; got {shown!r}")
        values[key] = value
    return values


def config_from_dict(raw: dict, *, source: str = "<dict>", default_name: str | None = None) -> Config:
    """Validate a plain dict (the parsed TOML, overrides already merged) into a :class:`Config`."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a configuration must be a table; got {_type_name(raw)}")
    top = {k: v for k, v in raw.items() if k not in SECTIONS}
    for key in top:
        if key not in TOP_FIELDS:
            raise ConfigError(f"{source}: unknown key or table {key!r}; allowed: "
                              f"{', '.join(TOP_FIELDS)} and tables [{'], ['.join(SECTIONS)}]")
    top_values = _validate_table(top, TOP_FIELDS, "the top level", source)
    sections = {}
    for section, fields in SECTIONS.items():
        table = raw.get(section)
        if table is None:
            raise ConfigError(f"{source}: missing table [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a table [{section}]; got {_type_name(table)}")
        sections[section] = _validate_table(table, fields, section, source)
    name = top_values["name"] or default_name or sections["data"]["name"].replace("/", "-")
    train = sections["train"]
    for algo in train["algos"]:  # the [train] keys are the old keywords: one translation, one set of checks
        try:
            CoreOptions(algo=algo, eps=train["eps"], estimator=train["estimator"], difference=train["difference"],
                        core_dtype=train["core_dtype"], recompute_blocks=train["recompute_blocks"],
                        block_chunk=train["block_chunk"] or None, integrator=train["integrator"],
                        fraction_bits=train["fraction_bits"])
        except ValueError as error:
            raise ConfigError(f"{source}: [train] with train.algos containing {algo!r}: {error}") from None
    if train["eval_every"] > train["steps"]:
        raise ConfigError(f"{source}: train.eval_every must be <= train.steps ({train['steps']}); "
                          f"got {train['eval_every']}")
    return Config(name=name.strip(), data=DataConfig(**sections["data"]), model=ModelConfig(**sections["model"]),
                  train=TrainConfig(**train), out=top_values["out"], source=source)


# --- overrides --------------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=1e-3"`` → ``("train.lr", 0.001)``. The value is read as a TOML literal (a bare word
    that is not valid TOML is taken as a string), never evaluated."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.lr=1e-3")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return key, parsed


def apply_overrides(raw: dict, overrides: dict[str, Any], source: str) -> dict:
    """Merge dotted-key overrides (``{"train.lr": 1e-3, "out": "runs/x"}``) into a parsed config."""
    merged = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for dotted, value in overrides.items():
        if value is None:
            continue
        parts = dotted.split(".")
        if len(parts) == 1:
            if parts[0] not in TOP_FIELDS:
                raise ConfigError(f"override {dotted}: unknown key; allowed: {', '.join(TOP_FIELDS)} or "
                                  f"section.key with section one of {', '.join(SECTIONS)}")
            merged[parts[0]] = value
        elif len(parts) == 2 and parts[0] in SECTIONS:
            section, key = parts
            if key not in SECTIONS[section]:
                raise ConfigError(f"override {dotted}: unknown key {key!r} in {section}; allowed keys: "
                                  f"{', '.join(SECTIONS[section])}")
            merged.setdefault(section, {})
            if not isinstance(merged[section], dict):
                raise ConfigError(f"{source}: {section} must be a table")
            merged[section][key] = value
        else:
            raise ConfigError(f"override {dotted}: expected key or section.key with section one of "
                              f"{', '.join(SECTIONS)}")
    return merged


def default_name_for(path: Path) -> str:
    """``configs/linear/JapaneseVowels.toml`` → ``linear/JapaneseVowels``; elsewhere the file stem."""
    parts = path.resolve().parts
    if "configs" in parts:
        index = len(parts) - 1 - parts[::-1].index("configs")
        rest = parts[index + 1:]
        if rest:
            return "/".join(rest)[: -len(path.suffix)] if path.suffix else "/".join(rest)
    return path.stem


def read_toml(path: str | Path, what: str = "config file") -> dict:
    """A TOML file as a dict; ``ConfigError`` naming the file when it is missing, not UTF-8 or not TOML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    except UnicodeDecodeError as error:
        raise ConfigError(f"{path}: not UTF-8 text: {error}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> Config:
    """Read, merge overrides into and validate a TOML configuration file."""
    path = Path(path)
    source = str(path)
    raw = read_toml(path)
    if overrides:
        raw = apply_overrides(raw, overrides, source)
    return config_from_dict(raw, source=source, default_name=default_name_for(path))
