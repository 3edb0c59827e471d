"""One process trains a run at a time: a lock beside the run's files, with its holder recorded.

    <out>/<config name>/<algo>/seed<seed>.lock         the lock (``filelock.FileLock``: ``flock``)
    <out>/<config name>/<algo>/seed<seed>.lock.holder  who holds it: {"host", "pid", "since", "command"}

Two ``hamecho train`` commands with the same configuration and ``--out``, a sweep started twice, or a Ray
task retried while its first attempt still runs would otherwise both train the run and both write its
checkpoint and result. The first to take the lock trains; any other raises :class:`RunBusy`, whose
message says who holds it, and the command skips the run.

A crash cannot leave the lock stuck: the operating system drops an ``flock`` when its process dies
(on NFS the server does, once the client's lease lapses). ``filelock`` falls back to a lease-based
lock file on a file system without ``flock``. The holder record is only read when the lock is
refused, so a stale record left by a crash is harmless (the next holder overwrites it).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from .checkpoints import atomic_write_json

__all__ = ["RunBusy", "RunLock", "lock_path"]


class RunBusy(Exception):
    """The run is being trained by another process (``holder``: its host, pid, start time and command)."""

    def __init__(self, message: str, holder: dict | None = None):
        super().__init__(message)
        self.holder = holder or {}

    def __reduce__(self):   # picklable: sent from process 0 to the others of a multi-process run
        return (type(self), (str(self), self.holder))


def lock_path(checkpoint_path: Path) -> Path:
    """The lock of the run whose checkpoint is ``checkpoint_path``: ``seed3.ckpt.npz`` → ``seed3.lock``."""
    checkpoint_path = Path(checkpoint_path)
    return checkpoint_path.with_name(checkpoint_path.name.split(".", 1)[0] + ".lock")


def _describe(holder: dict) -> str:
    if not holder:
        return "another process (its holder record cannot be read)"
    return f"pid {holder.get('pid')} on host {holder.get('host')} since {holder.get('since')}"


class RunLock:
    """The lock of one run: ``acquire(label)`` or :class:`RunBusy`, ``release()``; or ``with lock.held(label):``."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.holder_path = self.path.with_name(self.path.name + ".holder")
        self._lock = FileLock(str(self.path), timeout=0)

    def holder(self, wait_s: float = 0.0) -> dict:
        """The holder record (empty when there is none or it cannot be read); ``wait_s``: how long to wait for a
        holder that has just taken the lock to write it."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return json.loads(self.holder_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                if time.monotonic() >= deadline:
                    return {}
                time.sleep(0.05)

    def acquire(self, label: str) -> None:
        """Take the lock without waiting, and record this process as its holder; :class:`RunBusy` (one line,
        naming the holder) when another process holds it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            holder = self.holder(wait_s=2.0)
            raise RunBusy(f"{label} is being trained by {_describe(holder)} (lock {self.path}); skipped",
                          holder) from None
        atomic_write_json(self.holder_path, {
            "host": socket.gethostname(), "pid": os.getpid(),
            "since": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "command": " ".join(sys.argv)})

    def release(self) -> None:
        """Give the lock up (nothing when it is not held)."""
        if self._lock.is_locked:
            self.holder_path.unlink(missing_ok=True)
            self._lock.release()

    @contextmanager
    def held(self, label: str):
        """``with RunLock(path).held(label):`` acquire, and release on the way out."""
        self.acquire(label)
        try:
            yield self
        finally:
            self.release()
