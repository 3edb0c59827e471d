"""Checkpoints of a run, and the atomic file writes every file of a run goes through.

A checkpoint is one ``.npz``: the model's and the optimiser state's arrays as ``leaf_00000``,
``leaf_00001``, ... (the leaves of ``(eqx.filter(model, eqx.is_array), opt_state)`` in tree order)
and ``meta``, the UTF-8 bytes of a JSON object::

    {"format": "hamecho-checkpoint/1", "fingerprint": ..., "algo": ..., "config": {...},
     "dropout_key": [..], "epoch": ..., "loop": {...}}        # "loop": LoopState.to_json()

Files are written to a temporary file in the same folder, synced and renamed over the target, so a
crash never leaves a half-written checkpoint or result.
"""
from __future__ import annotations

import io
import json
import os
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .state import LoopState

__all__ = ["CHECKPOINT_FORMAT", "atomic_write_bytes", "atomic_write_json", "load_checkpoint", "resume_checkpoint",
           "save_checkpoint"]

CHECKPOINT_FORMAT = "hamecho-checkpoint/1"


# --- atomic writes ---------------------------------------------------------------------------------------

def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same folder and ``os.replace`` (no half-written files)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
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

def _state_leaves(model, opt_state) -> list:
    return jax.tree_util.tree_leaves((eqx.filter(model, eqx.is_array), opt_state))


def save_checkpoint(path: Path, model, opt_state, meta: dict) -> None:
    """Model and optimiser arrays plus ``meta`` (JSON, after ``"format"``) in one ``.npz``, written atomically."""
    arrays = {f"leaf_{i:05d}": np.asarray(leaf) for i, leaf in enumerate(_state_leaves(model, opt_state))}
    text = json.dumps({"format": CHECKPOINT_FORMAT, **meta}, default=_json_default)
    arrays["meta"] = np.frombuffer(text.encode(), dtype=np.uint8)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | Path, model_template=None, opt_template=None):
    """Read a checkpoint: (meta dict, model, optimiser state). With no templates only the meta dict is
    returned (model and optimiser state are None). ``ValueError`` if it does not fit the templates."""
    with np.load(path) as archive:
        meta = json.loads(bytes(archive["meta"]).decode())
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a hamecho checkpoint")
        leaves = [archive[f"leaf_{i:05d}"] for i in range(len(archive.files) - 1)]
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


def resume_checkpoint(path: Path, model_template, opt_template, *, fingerprint: str, dropout_key,
                      seed: int) -> tuple[LoopState, object, object]:
    """(loop state, model, optimiser state) of an interrupted run, checked to be the same run:
    ``ValueError`` for another configuration (``fingerprint``) or another seed (``dropout_key``)."""
    meta, model, opt_state = load_checkpoint(path, model_template, opt_template)
    if meta.get("fingerprint") != fingerprint:
        raise ValueError(f"{path} is from a different configuration (fingerprint "
                         f"{meta.get('fingerprint')} vs {fingerprint}); use another --out or --restart")
    state = LoopState.from_json(meta["loop"])
    if not np.array_equal(np.asarray(meta["dropout_key"], dtype=np.uint32),
                          np.asarray(jax.random.key_data(dropout_key))):
        raise ValueError(f"{path}: stored random key does not match seed {seed}")
    return state, model, opt_state
