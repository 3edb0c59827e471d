"""Two faults of issue 23: a run trained by two processes at once, and a checkpoint that cannot be read."""
import os
import socket

import numpy as np
import pytest

from hamecho.training import Interrupted, load_checkpoint, read_result, run_one, run_paths, train_config
from hamecho.training.checkpoints import CheckpointUnreadable, previous_checkpoint
from hamecho.training.config import config_from_dict
from hamecho.training.locks import RunBusy, RunLock, lock_path

pytestmark = pytest.mark.usefixtures("isolated")  # tests/conftest.py


def tiny(**train):
    settings = {"lr": 1e-2, "batch_size": 8, "steps": 20, "eval_every": 5, "dtype": "float64", "seeds": [3],
                "algos": ["rhel"], "early_stopping": False} | train
    return config_from_dict({"data": {"name": "synthetic/first5", "length": 24, "num_samples": 64},
                             "model": {"hru": "linear", "hidden": 8, "state": 4, "blocks": 1},
                             "train": settings}, default_name="tiny")


def arrays(path):
    with np.load(path) as archive:
        return [archive[k] for k in sorted(archive.files) if k != "meta"]


def timing_free(history):
    return [{k: v for k, v in h.items() if k not in ("elapsed_s", "step_ms")} for h in history]


def truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])   # as a full disk or a copy gone wrong would leave it


def one_sentence(text: str) -> bool:
    return "\n" not in text and ". " not in text.replace("e.g. ", "")


# --- a checkpoint that cannot be read -------------------------------------------------------------------

def test_an_unreadable_checkpoint_falls_back_to_the_previous_one_and_ends_identically(tmp_path):
    config = tiny()
    straight = run_one(config, "rhel", 3, tmp_path / "a", progress=False)
    with pytest.raises(Interrupted):
        run_one(config, "rhel", 3, tmp_path / "b", progress=False, stop_at_step=12)
    _, checkpoint = run_paths(config, "rhel", 3, tmp_path / "b")
    previous = previous_checkpoint(checkpoint)
    assert load_checkpoint(checkpoint)[0]["loop"]["step"] == 12      # the interrupt's checkpoint
    assert load_checkpoint(previous)[0]["loop"]["step"] == 10        # the one before it is kept
    truncate(checkpoint)
    with pytest.raises(CheckpointUnreadable, match=f"the checkpoint {checkpoint} cannot be read"):
        load_checkpoint(checkpoint)
    with pytest.warns(UserWarning, match=r"cannot be read .*; resuming from the previous checkpoint .*step 10"):
        resumed = run_one(config, "rhel", 3, tmp_path / "b", progress=False)
    # two steps are trained again, and the run ends as the uninterrupted one, bit for bit
    a, b = read_result(straight), read_result(resumed)
    assert timing_free(a["history"]) == timing_free(b["history"]) and b["sessions"] == 2
    assert all(np.array_equal(x, y) for x, y in zip(arrays(run_paths(config, "rhel", 3, tmp_path / "a")[1]),
                                                    arrays(checkpoint), strict=True))


def test_with_no_readable_checkpoint_left_resume_fails_in_one_sentence(tmp_path):
    config = tiny()
    with pytest.raises(Interrupted):
        run_one(config, "rhel", 3, tmp_path, progress=False, stop_at_step=3)   # one checkpoint only
    _, checkpoint = run_paths(config, "rhel", 3, tmp_path)
    assert not previous_checkpoint(checkpoint).exists()
    truncate(checkpoint)
    with pytest.raises(ValueError) as info:
        run_one(config, "rhel", 3, tmp_path, progress=False)
    message = str(info.value)
    assert message.startswith(f"the checkpoint {checkpoint} cannot be read (") and one_sentence(message)
    assert "no earlier checkpoint is kept to fall back to; remove it and train the run from the start with " \
           "--restart" in message

    with pytest.raises(Interrupted):   # a second checkpoint, then both unreadable
        run_one(config, "rhel", 3, tmp_path / "two", progress=False, stop_at_step=7)
    _, checkpoint = run_paths(config, "rhel", 3, tmp_path / "two")
    truncate(checkpoint)
    truncate(previous_checkpoint(checkpoint))
    with pytest.raises(ValueError, match="and neither can the previous one") as info:
        run_one(config, "rhel", 3, tmp_path / "two", progress=False)
    assert one_sentence(str(info.value))


# --- a run that another process is training -------------------------------------------------------------

def test_a_run_another_process_holds_is_skipped_with_its_holder_named(tmp_path):
    config = tiny()
    result, checkpoint = run_paths(config, "rhel", 3, tmp_path)
    other = RunLock(lock_path(checkpoint))          # another trainer of the same run (here: this test)
    other.acquire("tiny rhel seed 3")
    try:
        with pytest.raises(RunBusy) as info:
            run_one(config, "rhel", 3, tmp_path, progress=False)
        assert str(info.value) == (f"tiny rhel seed 3 is being trained by pid {os.getpid()} on host "
                                   f"{socket.gethostname()} since {other.holder()['since']} (lock "
                                   f"{lock_path(checkpoint)}); skipped")
        skipped = []
        assert train_config(config, out=tmp_path, progress=False, on_busy=skipped.append) == []
        assert len(skipped) == 1 and not result.exists() and not checkpoint.exists()
    finally:
        other.release()
    # released (as a crash releases it: the operating system drops the lock with its process): it trains
    assert read_result(run_one(config, "rhel", 3, tmp_path, progress=False))["steps"] == 20
    assert not lock_path(checkpoint).with_name("seed3.lock.holder").exists()
