"""Typed training configurations: TOML files validated on load, with command-line overrides.

A configuration is a TOML file with three tables and two optional top-level keys::

    name = "linear/JapaneseVowels"   # optional; default: the file's path under configs/, without .toml
    out = "runs"                      # optional; where results go (``--out`` overrides)

    [data]                            # what hamecho.data.load() gets
    name = "uea/JapaneseVowels"       # a dataset hamecho knows, or instead
    # path = "my.npz"                 # a data file of your own (relative: to this file's folder)
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

    [device]                          # optional: every HRU core runs on a physical device (RHEL only)
    kind = "simulated"                # hamecho.physical.device_from_table reads and checks this table
    noise = 1e-3

Every key is declared once, as a field of the dataclasses below: its type (the annotation), its
default (none: the key must be given) and, where it matters, a range or a set of allowed values (the
``check`` of :func:`key`); ``docs/training.md`` describes them. Loading fails with
:class:`ConfigError` (a ``ValueError``) naming the file, the key and what is allowed, for: unknown
tables or keys, wrong types, missing required keys, out-of-range values and malformed dataset names.
Nothing is ever evaluated as code; command-line values are parsed as TOML literals.
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
    "parse_override", "PAPER_SEEDS", "ALGOS", "DTYPES", "train_choices",
]

from ..core.choices import Choices, check_compatible
from ..core.fixed_point import FixedPointLeapfrog
from ..core.gradients import DIFFERENCES, ESTIMATORS, RHEL
from ..core.integrators import CORE_DTYPES
from ..data.files import FILE_SUFFIXES
from ..data.registry import check_dataset_name
from ..nn.keywords import ALGOS, INTEGRATORS, choices_from_keywords
from ..nn.layers import HRU_KINDS, NORMS
from ..nn.streaming import Streaming

DTYPES = ("float32", "float64")
HRUS = tuple(HRU_KINDS)
# train.memory: "none" (the memory strategies of the boolean/integer keys recompute_blocks, block_chunk, or
# every activation kept) or "streaming" (hamecho.Streaming(train.stream_chunk): RHEL and model.norm "layer" only).
MEMORIES = ("none", "streaming")
PAPER_SEEDS = (2345, 3456, 4567, 5678, 6789)


class ConfigError(ValueError):
    """A configuration is invalid; the message names the source, the key and what is allowed."""


# --- checks: each returns what is wrong with a value (completing "<key> ...") or None ------------------

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


def _data_file(value):
    if not value.strip().lower().endswith(FILE_SUFFIXES):
        return f"must be the path of a data file ending in {', '.join(FILE_SUFFIXES)}"
    return None


def _relative_name(value):
    return None if value.strip() and ".." not in value and not value.startswith("/") \
        else "must be a non-empty relative name without '..'"


def _non_empty_path(value):
    return None if value.strip() else "must be a non-empty path"


def _accepted_by(build):
    """A check that asks a strategy class: None when ``build(value)`` accepts the value, else what it says
    (its ranges live in the class, one place)."""
    def check(value):
        try:
            build(value)
        except ValueError as error:
            return "is refused: " + str(error).rsplit("; got ", 1)[0]
        return None
    return check


def key(default: Any = dataclasses.MISSING, check=None):
    """A configuration key, as a dataclass field: ``default`` (leave it out: the key must be given) and
    ``check(value)``. Its kind of value (string, integer, number, boolean, list) is the annotation."""
    return field(default=default, metadata={"check": check})


# --- the typed configuration: every key declared once -------------------------------------------------

@dataclass(frozen=True)
class DataConfig:
    """[data]: exactly one of ``name`` (a dataset hamecho knows) and ``path`` (a data file of your own:
    .npz, .csv, .parquet, .ts, .arff or .tsv, read by ``hamecho.data.load_file``; a relative path is
    relative to the folder of the configuration file, or to the working directory for a dict).
    ``data_dir`` and the ``ppg_*`` keys apply to dataset names only."""

    name: str | None = key(None, check_dataset_name)
    path: str | None = key(None, _data_file)
    time_channel: bool = key(False)
    length: int | None = key(None, _positive)
    num_samples: int | None = key(None, lambda v: None if v >= 3 else "must be >= 3")
    data_dir: str | None = key(None)
    split_dir: str | None = key(None)
    ppg_window: int = key(49_920, _multiple_of_128)
    ppg_stride: int = key(4_992, _multiple_of_128)

    @property
    def dataset(self) -> str:
        """What the data is called in messages and result files: the dataset name, or the file's path."""
        return self.name if self.name is not None else self.path


@dataclass(frozen=True)
class ModelConfig:
    """[model]: the HSSM."""

    hru: str = key(check=_one_of(HRUS))
    hidden: int = key(64, _positive)
    state: int = key(16, _positive)
    blocks: int = key(6, _positive)
    step: float = key(1e-4, _positive_finite)
    # "batch": BatchNorm over (time, batch), the paper's; "layer": each step over its features (local in time:
    # what train.memory = "streaming" needs).
    norm: str = key("batch", _one_of(tuple(NORMS)))


@dataclass(frozen=True)
class TrainConfig:
    """[train]: the loop, and the gradient choices (keywords translated by :func:`train_choices`; their
    defaults and ranges are the strategy classes', except ``core_dtype``, float64 here)."""

    lr: float = key(check=_positive_finite)
    batch_size: int = key(32, _positive)
    steps: int = key(100_000, _positive)
    eval_every: int = key(1_000, _positive)
    early_stopping: bool = key(True)
    patience: int = key(10, _non_negative)
    seeds: tuple[int, ...] = key(PAPER_SEEDS, _seeds)
    algos: tuple[str, ...] = key(("bptt", "rhel"), _subset_of(ALGOS))
    eps: float = key(RHEL.eps, _accepted_by(lambda v: RHEL(eps=v)))
    estimator: str = key(RHEL.estimator, _one_of(ESTIMATORS))
    difference: str = key(RHEL.difference, _one_of(DIFFERENCES))
    dtype: str = key("float32", _one_of(DTYPES))
    # Precision the Hamiltonian cores integrate in: "float64" (default; the model and the stored drives keep
    # ``dtype``, each step costs more, and float32 phase drift on long sequences is gone) or "input" (= ``dtype``).
    core_dtype: str = key("float64", _one_of(CORE_DTYPES))
    # Memory for long sequences: keep only each block's input per step, recompute the block in the backward
    # pass (one more forward per block; README "Speed and memory").
    recompute_blocks: bool = key(False)
    # Memory for long sequences: run every block over time chunks of this many steps, each recomputed in the
    # backward pass, so a block keeps only its input (0: off; README "Speed and memory").
    block_chunk: int = key(0, _non_negative)
    # Memory flat in the sequence length: "streaming" runs the whole stack over time chunks of stream_chunk
    # steps, forward and backward, keeping nothing of length L but the input (hamecho.Streaming; RHEL only,
    # model.norm = "layer" only; docs/memory.md).
    memory: str = key("none", _one_of(MEMORIES))
    stream_chunk: int = key(Streaming.chunk, _accepted_by(lambda v: Streaming(chunk=v)))
    # "fixed_point": exactly reversible cores on an int64 grid of 2**-fraction_bits (RHEL only; README).
    integrator: str = key("float", _one_of(INTEGRATORS))
    fraction_bits: int = key(FixedPointLeapfrog.fraction_bits,
                             _accepted_by(lambda v: FixedPointLeapfrog(fraction_bits=v)))
    eval_batch_size: int = key(256, _positive)
    eval_train: bool = key(False)
    time_limit_s: float | None = key(None, _positive_finite)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}


@dataclass(frozen=True, kw_only=True)
class Config:
    """A validated configuration: the top-level keys ``name`` and ``out`` and the three tables.

    ``name`` absent from the file: the file's path under configs/ (:func:`default_name_for`), else the
    dataset name with ``/`` as ``-``, or the stem of ``data.path``. ``source`` is where it came from (for
    messages only); ``base_dir`` is the folder a relative ``data.path`` is read from (the configuration
    file's; None: the working directory).
    """

    name: str = key(None, _relative_name)
    data: DataConfig
    model: ModelConfig
    train: TrainConfig
    out: str = key("runs", _non_empty_path)
    # the optional [device] table as given (checked by hamecho.physical.device_from_table); None: no device
    device: dict | None = field(default=None, hash=False)
    source: str = field(default="<dict>", compare=False)
    base_dir: str | None = field(default=None, compare=False)

    def to_dict(self) -> dict:
        """Plain JSON/TOML-compatible dict (None values dropped), the form stored in results."""
        def clean(obj):
            return {k: (list(v) if isinstance(v, tuple) else v)
                    for k, v in dataclasses.asdict(obj).items() if v is not None}
        d = {"name": self.name, "out": self.out, "data": clean(self.data), "model": clean(self.model),
             "train": clean(self.train)}
        if self.device is not None:
            d["device"] = dict(self.device)
        return d

    def physical_device(self):
        """The ``hamecho.physical`` device the [device] table describes, or None."""
        if self.device is None:
            return None
        from ..physical import device_from_table

        return device_from_table(dict(self.device))

    def run_fingerprint(self) -> str:
        """Hash of everything that changes the outcome of one (algo, seed) run.

        Excludes the seed and algorithm lists (a run is one of each), where results go, where the data
        lives, and the time limit; a checkpoint or result is reused only when this hash matches. A data
        file of your own counts by its ``data.path`` as written (not its content); a [device] table counts
        when present (so configurations without one keep their fingerprints).
        """
        d = self.to_dict()
        for name in ("name", "out"):
            d.pop(name)
        for name in ("data_dir", "split_dir"):
            d["data"].pop(name, None)
        for name in ("seeds", "algos", "time_limit_s"):
            d["train"].pop(name, None)
        if not d["train"].get("block_chunk"):
            d["train"].pop("block_chunk", None)  # off: fingerprints of runs made before the option stay valid
        # likewise at their defaults: the norm "batch" (the only one before the key) and no streaming; the
        # chunk counts only when streaming
        if d["model"].get("norm") == "batch":
            d["model"].pop("norm")
        if d["train"].get("memory") == "none":
            d["train"].pop("memory")
            d["train"].pop("stream_chunk", None)
        text = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def replace(self, **sections) -> Config:
        """A copy with whole sections or fields replaced, e.g. ``cfg.replace(train={"steps": 10})``,
        validated again."""
        raw = self.to_dict()
        for name, value in sections.items():
            if isinstance(value, dict) and name in SECTIONS:
                raw[name] = {**raw[name], **value}
            else:
                raw[name] = value
        return config_from_dict(raw, source=self.source, default_name=self.name, base_dir=self.base_dir)


TOP_KEYS = tuple(f.name for f in dataclasses.fields(Config) if "check" in f.metadata)   # name, out
OPTIONAL_TABLES = ("device",)


# --- validation -------------------------------------------------------------------------------------

# The kind of value a key holds, by its annotation (a trailing "| None" only says the default is None).
_KINDS = {"str": "str", "int": "int", "float": "float", "bool": "bool", "tuple[int, ...]": "int_list",
          "tuple[str, ...]": "str_list"}
_TYPE_WORDS = {"str": "a string", "int": "an integer", "float": "a number", "bool": "true or false",
               "int_list": "a list of integers", "str_list": "a list of strings"}


def _keys(cls) -> list[dataclasses.Field]:
    """The configuration keys of a dataclass (the fields declared with :func:`key`), in order."""
    return [f for f in dataclasses.fields(cls) if "check" in f.metadata]


def _kind(f: dataclasses.Field) -> str:
    return _KINDS[f.type.removesuffix(" | None")]


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


def _validate_table(raw: dict, keys: list[dataclasses.Field], where: str, source: str) -> dict:
    """The values of one table, defaults filled in; ``ConfigError`` for an unknown, missing or bad key."""
    allowed = ", ".join(f.name for f in keys)
    for name in raw:
        if name not in {f.name for f in keys}:
            raise ConfigError(f"{source}: unknown key {name!r} in {where}; allowed keys: {allowed}")
    values = {}
    for f in keys:
        kind, check = _kind(f), f.metadata["check"]
        name = f"{where}.{f.name}" if where != "the top level" else f.name
        if f.name not in raw:
            if f.default is dataclasses.MISSING:
                raise ConfigError(f"{source}: missing required key {name} ({_TYPE_WORDS[kind]})")
            values[f.name] = f.default
            continue
        try:
            value = _coerce(kind, raw[f.name])
        except TypeError:
            raise ConfigError(f"{source}: {name} must be {_TYPE_WORDS[kind]}; got {raw[f.name]!r} "
                              f"({_type_name(raw[f.name])})") from None
        problem = check(value) if check is not None else None
        if problem:
            shown = list(value) if isinstance(value, tuple) else value
            raise ConfigError(f"{source}: {name} {problem}; got {shown!r}")
        values[f.name] = value
    return values


def _check_data_source(data: dict, source: str) -> None:
    """Exactly one of data.name and data.path."""
    if data["name"] is None and data["path"] is None:
        raise ConfigError(f"{source}: missing required key data.name (a string), or data.path (a data file of "
                          "your own)")
    if data["name"] is not None and data["path"] is not None:
        raise ConfigError(f"{source}: give data.name (a dataset hamecho knows) or data.path (a data file of your "
                          f"own), not both; got name {data['name']!r} and path {data['path']!r}")


def train_choices(train, algo: str, device=None) -> Choices:
    """The strategy objects the [train] keys (a ``TrainConfig`` or its dict) stand for with ``algo``, with
    ``device`` (from a [device] table) in the integrator's place: the one translation of the TOML keys
    (through ``hamecho.nn.keywords.choices_from_keywords``, the translation of the keyword spelling).
    ``ValueError`` for an illegal combination."""
    t = train if isinstance(train, dict) else dataclasses.asdict(train)
    if device is not None and t["integrator"] != "float":
        raise ValueError("a [device] table takes the integrator's place: leave train.integrator at 'float'; "
                         f"got {t['integrator']!r}")
    choices = choices_from_keywords(
        algo=algo, eps=t["eps"], estimator=t["estimator"], difference=t["difference"], core_dtype=t["core_dtype"],
        recompute_blocks=t["recompute_blocks"], block_chunk=t["block_chunk"] or None, integrator=t["integrator"],
        fraction_bits=t["fraction_bits"], stream_chunk=t["stream_chunk"] if t["memory"] == "streaming" else None)
    return choices if device is None else Choices(gradient=choices.gradient, integrator=device, memory=choices.memory)


def _device_from(table, source: str):
    """The device of an optional [device] table (None without one); ``ConfigError`` naming the key."""
    if table is None:
        return None
    from ..physical import device_from_table

    try:
        return device_from_table(table, where="device")
    except ValueError as error:
        raise ConfigError(f"{source}: {error}") from None


def _check_train_choices(train: dict, model: dict, source: str, device=None) -> None:
    """Every algorithm of train.algos translated (:func:`train_choices`) and checked against the model's norm
    by the central rule (``hamecho.core.choices.check_compatible``)."""
    for algo in train["algos"]:
        try:
            choices = train_choices(train, algo, device)
            check_compatible(choices.gradient, choices.integrator, choices.memory, norm=model["norm"])
        except ValueError as error:
            keys = "[train] and model.norm" if train["memory"] == "streaming" else "[train]"
            raise ConfigError(f"{source}: {keys} with train.algos containing {algo!r}: {error}") from None
    if train["eval_every"] > train["steps"]:
        raise ConfigError(f"{source}: train.eval_every must be <= train.steps ({train['steps']}); "
                          f"got {train['eval_every']}")


def config_from_dict(raw: dict, *, source: str = "<dict>", default_name: str | None = None,
                     base_dir: str | Path | None = None) -> Config:
    """Validate a plain dict (the parsed TOML, overrides already merged) into a :class:`Config`.

    ``base_dir``: the folder a relative ``data.path`` is read from (None: the working directory)."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a configuration must be a table; got {_type_name(raw)}")
    top = {k: v for k, v in raw.items() if k not in SECTIONS and k not in OPTIONAL_TABLES}
    for name in top:
        if name not in TOP_KEYS:
            raise ConfigError(f"{source}: unknown key or table {name!r}; allowed: "
                              f"{', '.join(TOP_KEYS)} and tables [{'], ['.join((*SECTIONS, *OPTIONAL_TABLES))}]")
    top_values = _validate_table(top, _keys(Config), "the top level", source)
    sections = {}
    for section, cls in SECTIONS.items():
        table = raw.get(section)
        if table is None:
            raise ConfigError(f"{source}: missing table [{section}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {section} must be a table [{section}]; got {_type_name(table)}")
        sections[section] = _validate_table(table, _keys(cls), section, source)
    data, train = sections["data"], sections["train"]
    _check_data_source(data, source)
    device = raw.get("device")
    _check_train_choices(train, sections["model"], source, _device_from(device, source))
    name = (top_values["name"] or default_name
            or (data["name"].replace("/", "-") if data["name"] is not None else Path(data["path"]).stem))
    return Config(name=name.strip(), data=DataConfig(**data), model=ModelConfig(**sections["model"]),
                  train=TrainConfig(**train), out=top_values["out"], device=None if device is None else dict(device),
                  source=source,
                  base_dir=None if base_dir is None else str(base_dir))


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
            if parts[0] not in TOP_KEYS:
                raise ConfigError(f"override {dotted}: unknown key; allowed: {', '.join(TOP_KEYS)} or "
                                  f"section.key with section one of {', '.join(SECTIONS)}")
            merged[parts[0]] = value
        elif len(parts) == 2 and parts[0] in SECTIONS:
            section, name = parts
            allowed = [f.name for f in _keys(SECTIONS[section])]
            if name not in allowed:
                raise ConfigError(f"override {dotted}: unknown key {name!r} in {section}; allowed keys: "
                                  f"{', '.join(allowed)}")
            merged.setdefault(section, {})
            if not isinstance(merged[section], dict):
                raise ConfigError(f"{source}: {section} must be a table")
            merged[section][name] = value
        elif len(parts) == 2 and parts[0] in OPTIONAL_TABLES:  # checked with the table (device_from_table)
            merged.setdefault(parts[0], {})
            if not isinstance(merged[parts[0]], dict):
                raise ConfigError(f"{source}: {parts[0]} must be a table")
            merged[parts[0]][parts[1]] = value
        else:
            raise ConfigError(f"override {dotted}: expected key or section.key with section one of "
                              f"{', '.join((*SECTIONS, *OPTIONAL_TABLES))}")
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
    """Read, merge overrides into and validate a TOML configuration file (a relative ``data.path`` in it is
    relative to the file's folder)."""
    path = Path(path)
    source = str(path)
    raw = read_toml(path)
    if overrides:
        raw = apply_overrides(raw, overrides, source)
    return config_from_dict(raw, source=source, default_name=default_name_for(path),
                            base_dir=path.resolve().parent)
