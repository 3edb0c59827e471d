"""Checkpoints of a run, and the atomic file writes every file of a run goes through.

A checkpoint is one ``.npz``: the model's and the optimiser state's arrays as ``leaf_00000``,
``leaf_00001``, ... (the leaves of ``(eqx.filter(model, eqx.is_array), opt_state)`` in tree order)
and ``meta``, the UTF-8 bytes of a JSON object::

    {"format": "hamecho-checkpoint/1", "fingerprint": ..., "algo": ..., "config": {...},
     "dropout_key": [..], "epoch": ..., "loop": {...}}        # "loop": LoopState.to_json()

Files are written to a temporary file in the same folder, synced and renamed over the target, so a
crash never leaves a half-written checkpoint or result. The checkpoint before the last one is kept
beside it (``seed3.ckpt.prev.npz`` next to ``seed3.ckpt.npz``): a checkpoint that cannot be read
(truncated by a full disk or a copy gone wrong) is reported with its path, and resuming falls back to
the previous one with a warning, losing at most one checkpoint interval.
"""
from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .state import LoopState

__all__ = ["CHECKPOINT_FORMAT", "CheckpointUnreadable", "atomic_write_bytes", "atomic_write_json", "checkpoint_exists",
           "load_checkpoint", "previous_checkpoint", "remove_checkpoint", "resume_checkpoint", "save_checkpoint"]

CHECKPOINT_FORMAT = "hamecho-checkpoint/1"


# --- atomic writes ---------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes, *, keep_previous: Path | None = None) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` (no half-written files).

    ``keep_previous``: once the new file is complete, the file it replaces is renamed there first."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if keep_previous is not None and path.exists():
        os.replace(path, keep_previous)
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, tuple):
        return list(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def atomic_write_json(path: Path, payload: dict) -> None:
    """``payload`` as indented JSON (numpy scalars as numbers), written atomically."""
    atomic_write_bytes(path, (json.dumps(payload, indent=1, default=_json_default) + "\n").encode())


# --- save, load, resume ----------------------------------------------------------------------------------

class CheckpointUnreadable(ValueError):
    """A checkpoint file that cannot be read (truncated, corrupt, not a checkpoint); the message names it."""


def previous_checkpoint(path: Path) -> Path:
    """Where the checkpoint before ``path`` is kept: ``seed3.ckpt.npz`` → ``seed3.ckpt.prev.npz``."""
    path = Path(path)
    stem = path.name[:-len(".npz")] if path.name.endswith(".npz") else path.name
    return path.with_name(f"{stem}.prev.npz")


def checkpoint_exists(path: Path) -> bool:
    """Whether the run has a checkpoint: the last one, or the one before it (a crash between the two renames
    of :func:`save_checkpoint` leaves only that)."""
    return Path(path).exists() or previous_checkpoint(path).exists()


def remove_checkpoint(path: Path) -> None:
    """Delete a run's checkpoint and the one kept before it (those that exist)."""
    for candidate in (Path(path), previous_checkpoint(path)):
        candidate.unlink(missing_ok=True)


def _state_leaves(model, opt_state) -> list:
    return jax.tree_util.tree_leaves((eqx.filter(model, eqx.is_array), opt_state))


def save_checkpoint(path: Path, model, opt_state, meta: dict) -> None:
    """Model and optimiser arrays plus ``meta`` (JSON, after ``"format"``) in one ``.npz``, written atomically;
    the checkpoint it replaces is kept as :func:`previous_checkpoint`."""
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(_state_leaves(model, opt_state))}
    text = json.dumps({"format": CHECKPOINT_FORMAT, **meta}, default=_json_default)
    arrays["meta"] = np.frombuffer(text.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue(), keep_previous=previous_checkpoint(path))


def _read_archive(path: Path) -> tuple[dict, list[np.ndarray]]:
    """(meta, arrays) of a checkpoint file; :class:`CheckpointUnreadable` naming the file if it cannot be read."""
    try:
        with np.load(path) as archive:
            meta = json.loads(bytes(archive["meta"]).decode())
            leaves = [archive[f"leaf_{i:05d}"] for i in range(len(archive.files) - 1)]
    except FileNotFoundError:
        raise
    except Exception as error:  # noqa: BLE001 - zipfile, zlib, numpy, JSON and key errors all mean "unreadable"
        raise CheckpointUnreadable(f"the checkpoint {path} cannot be read ({type(error).__name__}: {error})") from None
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointUnreadable(f"{path} is not a hamecho checkpoint")
    return meta, leaves


def load_checkpoint(path: str | Path, model_template=None, opt_template=None):
    """Read a checkpoint: (meta dict, model, optimiser state). With no templates only the meta dict is
    returned (model and optimiser state are None). ``ValueError`` if it does not fit the templates,
    :class:`CheckpointUnreadable` (a ``ValueError``) if the file cannot be read."""
    meta, leaves = _read_archive(path)
    if model_template is None:
        return meta, None, None
    params, static = eqx.partition((model_template, opt_template), eqx.is_array)
    template_leaves, treedef = jax.tree_util.tree_flatten(params)
    if len(template_leaves) != len(leaves):
        raise ValueError(f"{path}: checkpoint has {len(leaves)} arrays, the model needs {len(template_leaves)}")
    for i, (t, a) in enumerate(zip(template_leaves, leaves)):
        if tuple(t.shape) != a.shape or np.dtype(t.dtype) != a.dtype:
            raise ValueError(f"{path}: array {i} is {a.dtype}{a.shape}, the model needs {t.dtype}{tuple(t.shape)}")
    restored = jax.tree_util.tree_unflatten(treedef, [jnp.asarray(a) for a in leaves])
    model, opt_state = eqx.combine(restored, static)
    return meta, model, opt_state


def _load_with_fallback(path: Path, model_template, opt_template):
    """The last checkpoint, or, when it cannot be read (or is missing after a crash between the renames of
    :func:`save_checkpoint`), the previous one with a warning; one-sentence ``ValueError`` when neither can."""
    previous = previous_checkpoint(path)
    try:
        return path, load_checkpoint(path, model_template, opt_template)
    except (CheckpointUnreadable, FileNotFoundError) as error:
        problem = str(error) if isinstance(error, CheckpointUnreadable) else f"the checkpoint {path} is missing"
    if not previous.exists():
        raise ValueError(f"{problem}, and no earlier checkpoint is kept to fall back to; remove it and train the run "
                         "from the start with --restart") from None
    try:
        loaded = load_checkpoint(previous, model_template, opt_template)
    except CheckpointUnreadable as error:
        raise ValueError(f"{problem}, and neither can the previous one ({error}); remove both and train the run from "
                         "the start with --restart") from None
    warnings.warn(f"{problem}; resuming from the previous checkpoint {previous} (step "
                  f"{loaded[0].get('loop', {}).get('step', '?')}) instead, so the steps after it are trained again",
                  UserWarning, stacklevel=3)
    return previous, loaded


def resume_checkpoint(path: Path, model_template, opt_template, *, fingerprint: str, dropout_key,
                      seed: int) -> tuple[LoopState, object, object]:
    """(loop state, model, optimiser state) of an interrupted run, checked to be the same run:
    ``ValueError`` for another configuration (``fingerprint``) or another seed (``dropout_key``).
    A last checkpoint that cannot be read falls back to the previous one, with a warning."""
    path, (meta, model, opt_state) = _load_with_fallback(Path(path), model_template, opt_template)
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} is from a different configuration (fingerprint "
                         f"{meta.get('fingerprint')} vs {fingerprint}); use another --out or --restart")
    state = LoopState.from_json(meta["loop"])
    if not np.array_equal(np.asarray(meta["dropout_key"], dtype=np.uint32),
                          np.asarray(jax.random.key_data(dropout_key))):
        raise ValueError(f"{path}: stored random key does not match seed {seed}")
    return state, model, opt_state
