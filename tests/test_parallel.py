"""Data parallelism (issue 23): the library's step on a sharded batch, and `hamecho train` over several devices
and processes. The multi-device cases run in subprocesses with virtual CPU devices (jax_num_cpu_devices)."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import hamecho as he
from hamecho import cli
from hamecho.tools.sweep import build_sweep, ray_resources
from hamecho.training import load_checkpoint, read_result
from hamecho.training.processes import KILL_ENV

HERE = Path(__file__).parent


def run_script(script: str, *args, env=None, timeout=600) -> dict:
    done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- the library: one train_step on a sharded batch equals the unsharded step ---------------------------

# two subprocesses, so that the two xdist workers share the compile time
GROUPS = {"batch-norm": ["rhel-batch", "bptt-batch-timechunks", "refusal"],
          "layer-norm": ["rhel-layer-streaming", "bptt-layer", "rhel-layer-streaming-float32"]}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_sharded_train_step_equals_the_unsharded_step(group):
    results = run_script("sharded_step.py", *GROUPS[group])
    cases = {name: r for name, r in results.items() if name != "refusal"}
    assert set(cases) == set(GROUPS[group]) - {"refusal"}
    assert {r["devices"] for r in cases.values()} == {2, 4}
    for name, r in cases.items():
        tolerance = 1e-12 if r["dtype"] == "float64" else 1e-6
        for what in ("loss", "gradients", "parameters", "norm_statistics"):
            if what in r:
                assert r[what] <= tolerance, (name, what, r[what])
        assert r["gradient_scale"] > 1e-3, name            # the gradients compared are not all zero
        assert r["model_replicated"], name
        if "norm_statistics" in r:
            assert r["norm_statistics_moved"] > 1e-4, name    # the step did update the statistics
    if group == "batch-norm":
        r = cases["rhel-batch"]
        assert r["plain_jax"] <= 1e-15                        # jax.device_put with NamedSharding: the same step
        assert r["predict"] <= 1e-12 and r["predict_sharded"]
        # the input check (NaN/Inf count) of a sharded batch counts every shard where it lies: its only
        # collective is the all-reduce of the counts (at most one number per sample), never the batch
        check = r["input_check"]
        assert check["kinds"] == ["all-reduce"] and check["loops"] >= 1 and check["count"] == 3, check
        assert check["reduced_elements"] <= check["samples"] < check["batch_elements"], check
        assert check["all_reduces_in_loops"] == 0, check
        assert results["refusal"] == ("the batch size 6 is not a multiple of the 4 devices it is split over; use a "
                                      "multiple of 4 or fewer devices")
    for name in ("rhel-batch", "bptt-layer"):
        if name in cases:
            # nothing but all-reduces of parameter-sized arrays (gradients, the norm's mean and variance, the
            # loss) crosses devices: no batch-sized array is gathered onto one device; and none of them runs
            # inside the time loops (once per time step: per_sample_sums)
            c, r = cases[name]["collectives"], cases[name]
            assert c["kinds"] == ["all-reduce"], c
            assert c["reduced_elements"] <= 2 * r["parameters_count"] < r["activation_elements"], c
            assert c["loops"] >= 2 and c["all_reduces_in_loops"] == 0, c


# --- the cores' per-sample sums (used on several devices) against the per-step batch sums --------------

# (HRU, choices): every core loop that sums θ's gradient (the echo, BPTT's reverse scan with and without
# checkpoints, the fixed-point echo); the nonlinear HRU's δ is a parameter of its own
CORE_CASES = {"nonlinear-rhel": ("nonlinear", dict(gradient=he.RHEL())),
              "nonlinear-bptt": ("nonlinear", dict(gradient=he.BPTT())),
              "nonlinear-bptt-checkpointed": ("nonlinear", dict(gradient=he.BPTT(checkpoint_every=5))),
              "nonlinear-rhel-fixed-point": ("nonlinear", dict(gradient=he.RHEL(),
                                                               integrator=he.FixedPointLeapfrog())),
              "linear-rhel-one-sided": ("linear", dict(gradient=he.RHEL(eps=0.01, estimator="one_sided")))}


@pytest.mark.usefixtures("x64")
@pytest.mark.parametrize("case", sorted(CORE_CASES))
def test_per_sample_sums_equal_the_per_step_batch_sums(case, monkeypatch):
    """On several devices the cores sum θ's gradient per sample over time, then over the batch once
    (``per_sample_sums``); on one device over the batch at every step. Same gradient, float64."""
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from hamecho.core import fixed_point, integrators

    hru, choices = CORE_CASES[case]
    kind = he.LinearHRU if hru == "linear" else he.NonlinearHRU
    layer = kind(4, 3, key=jax.random.PRNGKey(0), dtype=jnp.float64)
    u = jax.random.normal(jax.random.PRNGKey(1), (12, 3, 4), jnp.float64)
    loss = lambda m: jnp.sum(jnp.sin(m(u, **choices)))
    results, programs = {}, {}
    for per_sample in (False, True):
        for module in (integrators, fixed_point):
            monkeypatch.setattr(module, "per_sample_sums", lambda flag=per_sample: flag)
        results[per_sample] = jax.tree_util.tree_leaves(eqx.filter_grad(loss)(layer))
        programs[per_sample] = str(jax.make_jaxpr(lambda m: eqx.filter_grad(loss)(m))(layer))
    assert programs[True] != programs[False]      # the other summation did run
    scale = max(float(jnp.max(jnp.abs(g))) for g in results[False])
    assert scale > 1e-3
    difference = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(results[False], results[True], strict=True))
    assert difference <= 1e-12 * scale, difference


# --- hamecho train over several devices and processes ----------------------------------------------------

TINY = """\
name = "tiny"
[data]
name = "synthetic/first5"
length = 24
num_samples = 64
[model]
hru = "linear"
hidden = 8
state = 4
blocks = 1
[train]
lr = 1e-2
batch_size = 8
steps = 20
eval_every = 5
dtype = "float64"
seeds = [3]
algos = ["rhel"]
early_stopping = false
"""
TIMEOUT = 300   # seconds for one command on a loaded 2-core machine; a hang fails the test instead of the suite


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A folder with tiny.toml, the environment of every command, and the 1-process run's result."""
    root = tmp_path_factory.mktemp("parallel")
    (root / "tiny.toml").write_text(TINY)
    # JAX's persistent compilation cache (with its size limit, so that its entries are written under a lock):
    # the processes after the first load the compiled steps instead of compiling them again
    env = {**os.environ, "HAMECHO_CACHE": str(root / "cache"), "JAX_COMPILATION_CACHE_DIR": str(root / "jax-cache"),
           "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0", "JAX_COMPILATION_CACHE_MAX_SIZE": str(1 << 30)}
    env.pop(KILL_ENV, None)
    done = subprocess.run(hamecho("train", str(root / "tiny.toml"), "--out", str(root / "one"), "--quiet"),
                          capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return root, env, root / "one" / "tiny" / "rhel" / "seed3.json"


def hamecho(*args) -> list[str]:
    return [sys.executable, "-m", "hamecho.cli", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_processes(root, env, out, *extra, count=2, extra_env=None):
    """``count`` processes of one `hamecho train` run on 127.0.0.1 (JAX's CPU collectives, gloo)."""
    port, env = free_port(), {**env, **(extra_env or {})}
    return [subprocess.Popen(hamecho("train", str(root / "tiny.toml"), "--out", str(out), "--quiet", *extra,
                                     "--coordinator", f"127.0.0.1:{port}", "--num-processes", str(count),
                                     "--process-id", str(i)),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            for i in range(count)]


def finish(process) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=TIMEOUT)
    return process.returncode, out, err


def assert_same_result(reference: Path, other: Path, tolerance=1e-6):
    """The same metrics (every evaluation) and final parameters, to ``tolerance``."""
    a, b = read_result(reference), read_result(other)
    assert (a["steps"], a["best_step"], a["stopped"]) == (b["steps"], b["best_step"], b["stopped"])
    for key in ("test_metric", "test_loss", "best_val_metric"):
        assert b[key] == pytest.approx(a[key], rel=tolerance, abs=tolerance), key
    assert len(a["history"]) == len(b["history"])
    for ha, hb in zip(a["history"], b["history"]):
        for key, value in ha.items():
            if key not in ("elapsed_s", "step_ms") and isinstance(value, float):
                assert hb[key] == pytest.approx(value, rel=tolerance, abs=tolerance), (ha["step"], key)
    with np.load(reference.with_name("seed3.ckpt.npz")) as x, np.load(other.with_name("seed3.ckpt.npz")) as y:
        keys = sorted(k for k in x.files if k != "meta")
        assert keys == sorted(k for k in y.files if k != "meta")
        scale = max(float(np.max(np.abs(x[k]))) for k in keys)
        assert max(float(np.max(np.abs(x[k] - y[k]))) for k in keys) <= tolerance * scale


def test_two_processes_on_loopback_end_with_the_one_process_result(workspace):
    root, env, reference = workspace
    (rc0, out0, err0), (rc1, out1, err1) = [finish(p) for p in start_processes(root, env, root / "two")]
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    result = root / "two" / "tiny" / "rhel" / "seed3.json"
    assert_same_result(reference, result)
    assert read_result(result)["sessions"] == 1
    # process 0 alone reports; process 1 prints no result line
    assert "tiny rhel seed 3: test accuracy" in out0 and "tiny rhel seed 3" not in out1


def test_killing_one_process_stops_the_other_and_resume_finishes_identically(workspace):
    root, env, reference = workspace
    out = root / "killed"
    p0, p1 = start_processes(root, env, out, extra_env={KILL_ENV: "1:12"})   # process 1 is SIGKILLed at step 12
    rc1, _, _ = finish(p1)
    died = time.monotonic()
    rc0, _, err0 = finish(p0)
    assert rc1 == -signal.SIGKILL
    assert time.monotonic() - died < 60, "the surviving process did not exit in time"
    assert rc0 == 1
    last = err0.strip().splitlines()[-1]
    assert last.startswith("hamecho train: error: process 0 of 2: lost contact with another process of this run (")
    assert last.endswith("its last checkpoint is kept: when every process is running again, run the same command "
                         "with --resume")
    result = out / "tiny" / "rhel" / "seed3.json"
    assert not result.exists()
    assert load_checkpoint(result.with_name("seed3.ckpt.npz"))[0]["loop"]["step"] == 10

    (rc0, _, err0), (rc1, _, err1) = [finish(p) for p in start_processes(root, env, out, "--resume")]
    assert rc0 == 0 and rc1 == 0, (err0[-2000:], err1[-2000:])
    assert_same_result(reference, result)
    assert read_result(result)["sessions"] == 2


def test_two_concurrent_commands_train_a_run_once_over_two_devices(workspace):
    root, env, reference = workspace
    command = hamecho("train", str(root / "tiny.toml"), "--out", str(root / "twice"), "--quiet", "--devices", "2")
    first, second = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                     for _ in range(2)]
    outcomes = {first.pid: finish(first), second.pid: finish(second)}
    assert all(rc == 0 for rc, _, _ in outcomes.values()), outcomes
    skipped = [pid for pid, (_, _, err) in outcomes.items() if "is being trained by" in err]
    assert len(skipped) == 1, outcomes
    trainer = (set(outcomes) - set(skipped)).pop()
    line = outcomes[skipped[0]][2].strip().splitlines()[-1]
    assert line.startswith(f"hamecho train: tiny rhel seed 3 is being trained by pid {trainer} on host "
                           f"{socket.gethostname()} since ") and line.endswith("; skipped")
    result = root / "twice" / "tiny" / "rhel" / "seed3.json"
    assert read_result(result)["sessions"] == 1
    assert_same_result(reference, result)   # trained over 2 (virtual CPU) devices: the 1-device run's result

    # a batch the devices do not divide is refused in one sentence
    refused = hamecho("train", str(root / "tiny.toml"), "--out", str(root / "refused"), "--devices", "3")
    done = subprocess.run(refused, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "hamecho train: error: the batch size (train.batch_size) 8 is not a multiple of the 3 devices it is split "
        "over; use a multiple of 3 or fewer devices")


# --- sweeps: several devices per run ---------------------------------------------------------------------

def test_a_sweep_run_over_two_devices_gets_the_one_device_result(workspace, monkeypatch):
    root, env, reference = workspace
    for key in ("HAMECHO_CACHE", "JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS",
                "JAX_COMPILATION_CACHE_MAX_SIZE"):
        monkeypatch.setenv(key, env[key])     # the pool's fresh worker process inherits them
    out = root / "sweep"
    assert cli.main(["sweep", "--config", str(root / "tiny.toml"), "--out", str(out), "--devices-per-run", "2"]) == 0
    assert_same_result(reference, out / "tiny" / "rhel" / "seed3.json")


def test_ray_reserves_the_devices_of_a_run():
    sweep = build_sweep(configs=[str(HERE.parent / "configs" / "linear" / "JapaneseVowels.toml")], devices=4)
    assert sweep.devices == 4
    assert ray_resources(sweep, cluster_gpus=8) == {"num_cpus": 1.0, "num_gpus": 4.0, "max_retries": 3,
                                                    "max_calls": 1}
    assert ray_resources(sweep, cluster_gpus=0) == {"num_cpus": 4.0, "num_gpus": 0.0, "max_retries": 3,
                                                    "max_calls": 1}
    one = build_sweep(configs=[str(HERE.parent / "configs" / "linear" / "JapaneseVowels.toml")])
    assert ray_resources(one, cluster_gpus=8) == {"num_cpus": 1.0, "num_gpus": 0.0, "max_retries": 3}
    with pytest.raises(ValueError, match="devices must be a number >= 1"):
        build_sweep(configs=[str(HERE.parent / "configs" / "linear" / "JapaneseVowels.toml")], devices=0)


# --- starting the processes: what the flags and the environment ask for ---------------------------------

def test_when_a_multi_process_run_is_asked_for(monkeypatch):
    from hamecho.training import processes

    for name in ("JAX_COORDINATOR_ADDRESS", *processes.CLUSTER_SIZES):
        monkeypatch.delenv(name, raising=False)
    assert not processes.launched_by_cluster()
    assert processes.start() is False                       # no flags, no launcher: one process, nothing started
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "1")
    assert not processes.launched_by_cluster()              # a one-task Slurm step is one process
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert processes.launched_by_cluster()                  # mpirun -n 4
    monkeypatch.delenv("OMPI_COMM_WORLD_SIZE")
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "10.0.0.1:4455")
    assert processes.launched_by_cluster()
    # refused before anything starts, in one sentence
    with pytest.raises(ValueError, match=r"the process id must be in 0\.\.1; got 2"):
        processes.start("127.0.0.1:4455", 2, 2)
    with pytest.raises(ValueError, match="the number of processes must be at least 1; got 0"):
        processes.start("127.0.0.1:4455", 0, 0)
    with pytest.raises(ValueError, match="the coordinator must be HOST:PORT"):
        processes.start("localhost", 2, 0)
    assert processes.start("127.0.0.1:4455", 1, 0) is False   # one process needs no runtime


def test_a_lost_process_is_described_in_one_line():
    from hamecho.training.processes import describe_failure

    line, code = describe_failure(ValueError("UNKNOWN: Gloo AllGather failed: [external/gloo/gloo/transport/tcp/"
                                             "pair.cc:547] Connection closed by peer [127.0.0.1]:4511"))
    assert code == 1 and line.startswith("lost contact with another process of this run (UNKNOWN: Gloo")
    assert describe_failure(ValueError("the batch size 8 is not a multiple of the 3 devices")) == (
        "the batch size 8 is not a multiple of the 3 devices", 2)


def test_a_mesh_from_jax_make_mesh_trains(monkeypatch):
    """jax.make_mesh's default axes are Explicit, under which the model's vmap over a split batch is refused;
    the helper uses the same devices with Auto axes, and the step equals the unsharded one."""
    import jax
    import jax.numpy as jnp
    import optax
    from jax.sharding import AxisType

    mesh = jax.make_mesh((jax.device_count(),), ("batch",))
    assert set(mesh.axis_types) == {AxisType.Explicit}      # the premise: otherwise this test tests nothing
    dp = he.data_parallel(mesh)
    assert dp.mesh.axis_types == (AxisType.Auto,) and list(dp.mesh.devices.flat) == list(mesh.devices.flat)
    model = he.HSSM(in_dim=2, out_dim=3, hidden=8, state=4, blocks=1, key=jax.random.key(0))
    optimizer = optax.adam(1e-3)
    opt_state = he.init_optimizer(optimizer, model)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(4, 10, 2)), dtype=jnp.float32)
    y = jnp.array([0, 1, 2, 0])
    _, _, plain = he.train_step(model, opt_state, x, y, optimizer, key=jax.random.key(1))
    model, opt_state = dp.replicate((model, opt_state))
    _, _, sharded = he.train_step(model, opt_state, *dp.shard(x, y), optimizer, key=jax.random.key(1))
    assert abs(float(sharded) - float(plain)) <= 1e-6 * abs(float(plain))
