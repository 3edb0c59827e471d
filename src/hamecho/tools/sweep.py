"""Sweeps over configurations, algorithms and seeds: a local process pool by default, Ray on request.

    hamecho sweep SPEC.toml                         # grid from a file
    hamecho sweep --config configs/linear/*.toml --algos rhel bptt --seeds 2345 3456 --workers 2
    hamecho sweep SPEC.toml --ray                   # local Ray instance, or --ray-address HOST:PORT
    hamecho sweep SPEC.toml --ray --devices-per-run 4   # each run data-parallel over 4 GPUs of its node

Every run is ``hamecho.training.run_one(config, algo, seed, out, resume=True)``: idempotent (a run
whose result JSON exists is skipped) and resumable (a run with a checkpoint continues from it). Each run executes
in a fresh worker process, so a run that crashes its worker is retried and resumes from its last
checkpoint. Results land in ``OUT/<config name>/<algo>/seed<seed>.json`` — the layout
``hamecho report OUT`` reads — wherever the worker ran: the worker writes there (use a shared
folder on a cluster), and the driver also writes every result it receives when the file is missing.

Sweep file (TOML; every key optional except ``configs``):

    out = "runs/sweep"                     # results folder (default: each config's own ``out``)
    configs = ["configs/linear/JapaneseVowels.toml", "configs/nonlinear/*.toml"]   # paths or globs
    algos = ["rhel", "bptt"]               # default: each config's train.algos
    seeds = [2345, 3456, 4567]             # default: each config's train.seeds
    workers = 2                            # local pool size
    [set]                                  # overrides applied to every run (dotted config keys)
    "train.steps" = 2000
    [resources]                            # per run, for Ray
    cpus = 1
    gpus = 0
    devices = 1                            # each run data-parallel over this many devices (below)
    retries = 3                            # re-runs of a run whose worker died
    [search]                               # hyperparameter search: every combination is a run
    "train.lr" = [1e-3, 1e-4]              # (or `search = "paper"` for the peers' grid, PAPER_GRID)
    "model.blocks" = [2, 4]

Search mode: each combination of the ``[search]`` values (any config keys) becomes its own
configuration named ``<config name>/search/<key-value_...>``, run for every algorithm and seed.
Afterwards, per configuration and algorithm, the combination with the best mean *validation*
metric over its seeds is selected (test metrics are never looked at for the choice) and written to
``OUT/<config name>/search.json`` with the full ranking; ``hamecho report OUT`` shows every run.

Devices per run: each run trains data-parallel over ``devices`` devices of the node it runs on
(``run_one(devices=...)``, docs/scaling.md). On Ray a run reserves that many GPUs where the cluster has
GPUs (unless ``gpus`` says otherwise), else that many CPUs (and trains on as many CPU devices); each
such run gets a fresh worker, whose JAX sees only the GPUs Ray gave it. The local pool gives each run
that many CPU devices (on a GPU machine every local worker would see every GPU: use one worker, or Ray).
A run already being trained elsewhere (a sweep started twice, a Ray task retried while its first
attempt still runs) is skipped and reported, never trained twice (:mod:`hamecho.training.locks`).

Storage: a worker writes its checkpoint and result under ``out`` as the driver resolves it, so on
a cluster ``out`` must be a folder every node sees (NFS, a mounted bucket). Without shared storage,
the result JSON also travels back with the task and the driver writes it locally when it is
missing (``gather``), so the report works on the driver either way; checkpoints stay on the nodes.
"""
from __future__ import annotations

import concurrent.futures as futures
import glob
import itertools
import json
import multiprocessing
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import runtime
from ..nn.keywords import ALGOS
from ..training import Interrupted, load_config, read_result, run_one, run_paths
from ..training.checkpoints import atomic_write_bytes, atomic_write_json
from ..training.config import read_toml
from ..training.locks import RunBusy
from ..training.processes import request_cpu_devices
from ..training.results import config_dir

SPEC_KEYS = {"out", "configs", "algos", "seeds", "workers", "set", "resources", "search"}
# The grid of the peers' stacked-recurrent-model search (spec: peer-implementations.md, "Search grid"),
# restricted to the keys an HSSM has: 3 x 2 x 3 x 3 x 3 = 162 combinations per configuration.
PAPER_GRID = {"train.lr": [1e-3, 1e-4, 1e-5], "data.time_channel": [True, False], "model.hidden": [16, 64, 128],
              "model.blocks": [2, 4, 6], "model.state": [16, 64, 256]}
RESOURCE_KEYS = {"cpus", "gpus", "devices", "retries"}
# Fault injection for tests: a worker dies (os._exit) once per run right after the checkpoint at this step.
KILL_ENV = "HAMECHO_SWEEP_KILL_AT_STEP"


@dataclass(frozen=True)
class RunSpec:
    """One (configuration file, algorithm, seed) with the overrides of the sweep."""

    config_path: str
    algo: str
    seed: int
    overrides: tuple[tuple[str, Any], ...] = ()

    def config(self):
        return load_config(self.config_path, dict(self.overrides))

    @property
    def label(self) -> str:
        return f"{Path(self.config_path).parent.name}/{Path(self.config_path).stem} {self.algo} seed {self.seed}"


@dataclass(frozen=True)
class SearchGroup:
    """The combinations searched for one base configuration: ``names[i]`` is the configuration name of
    ``combos[i]`` (a tuple of (key, value))."""

    base_path: str
    base_name: str
    out: str
    combos: tuple
    names: tuple


@dataclass
class Sweep:
    runs: list[RunSpec]
    workers: int = 1
    cpus: float = 1.0
    gpus: float = 0.0
    retries: int = 3
    out: str | None = None
    search: list[SearchGroup] = field(default_factory=list)
    devices: int = 1             # per run, data-parallel


def _error(source: str, message: str) -> ValueError:
    return ValueError(f"{source}: {message}")


def _expand_configs(patterns, source: str) -> list[str]:
    paths = []
    for pattern in patterns:
        matches = sorted(glob.glob(str(pattern))) if any(c in str(pattern) for c in "*?[") else [str(pattern)]
        if not matches:
            raise _error(source, f"configs: no file matches {pattern!r}")
        for path in matches:
            if not Path(path).is_file():
                raise _error(source, f"configs: {path} does not exist")
            paths.append(path)
    if not paths:
        raise _error(source, "configs: give at least one configuration file")
    return paths


def search_grid(search, source: str) -> dict[str, list]:
    """Validate a search grid: ``"paper"`` or a table of config keys to non-empty lists of values."""
    if search is None:
        return {}
    if search == "paper":
        return {k: list(v) for k, v in PAPER_GRID.items()}
    if not isinstance(search, dict) or not search:
        raise _error(source, 'search must be "paper" or a table of config keys to lists of values, '
                             'e.g. "train.lr" = [1e-3, 1e-4]')
    grid = {}
    for key, values in search.items():
        if "." not in key:
            raise _error(source, f"search key {key!r} must be section.key, e.g. model.hidden")
        values = values if isinstance(values, list) else [values]
        if not values or len({json.dumps(v) for v in values}) != len(values):
            raise _error(source, f"search {key}: give a non-empty list of distinct values; got {values!r}")
        grid[key] = values
    return grid


def combinations(grid: dict[str, list]) -> list[tuple[tuple[str, Any], ...]]:
    """Every combination of the grid's values, keys in sorted order (``[()]`` for an empty grid)."""
    keys = sorted(grid)
    return [tuple(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def combo_label(combo) -> str:
    """``(("model.hidden", 16), ("train.lr", 0.001))`` → ``hidden-16_lr-0.001`` (a folder-safe name)."""
    def text(value):
        return str(value).lower() if isinstance(value, bool) else str(value)
    return "_".join(f"{key.split('.', 1)[1]}-{text(value)}" for key, value in combo)


def build_sweep(*, configs, algos=None, seeds=None, out=None, overrides=None, workers=1, cpus=1.0, gpus=0.0,
                retries=3, search=None, devices=1, source="command line") -> Sweep:
    """Expand the grid into runs; every configuration is loaded and validated before anything runs.

    ``search``: a hyperparameter grid (see :func:`search_grid`); each combination becomes its own
    configuration ``<name>/search/<label>`` run for every algorithm and seed.
    """
    overrides = dict(overrides or {})
    grid = search_grid(search, source)
    if out is not None:
        overrides["out"] = str(out)
    if algos is not None:
        bad = [a for a in algos if a not in ALGOS]
        if bad or not algos:
            raise _error(source, f"algos must be a non-empty list of {', '.join(map(repr, ALGOS))}; got {algos!r}")
    if seeds is not None and (not seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds)):
        raise _error(source, f"seeds must be a non-empty list of integers >= 0; got {seeds!r}")
    numbers = (("workers", workers, 1), ("cpus", cpus, 0), ("gpus", gpus, 0), ("retries", retries, 0),
               ("devices", devices, 1))
    for name, value, minimum in numbers:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < minimum:
            raise _error(source, f"{name} must be a number >= {minimum}; got {value!r}")
    if devices != int(devices):
        raise _error(source, f"devices must be a whole number of devices per run; got {devices!r}")
    runs, seen, groups = [], set(), []
    for path in _expand_configs(configs, source):
        base = load_config(path, overrides)
        names = []
        for combo in combinations(grid):
            run_overrides = dict(overrides)
            if grid:
                run_overrides.update(dict(combo))
                run_overrides["name"] = f"{base.name}/search/{combo_label(combo)}"
            try:
                config = load_config(path, run_overrides)
            except ValueError as error:
                raise _error(source, f"search combination {combo_label(combo)} of {path}: {error}") from None
            names.append(config.name)
            for seed in (seeds if seeds is not None else config.train.seeds):
                for algo in (algos if algos is not None else config.train.algos):
                    spec = RunSpec(path, algo, int(seed), tuple(sorted(run_overrides.items())))
                    key = (config.name, str(config.out), algo, int(seed))
                    if key in seen:
                        raise _error(source, f"two configurations share the name {config.name!r} and output folder")
                    seen.add(key)
                    runs.append(spec)
        if grid:
            groups.append(SearchGroup(path, base.name, str(base.out), tuple(combinations(grid)),
                                      tuple(names)))
    return Sweep(runs, workers=int(workers), cpus=float(cpus), gpus=float(gpus), retries=int(retries), out=out,
                 search=groups, devices=int(devices))


def load_sweep(path: str | Path, **given) -> Sweep:
    """Read a sweep file; ``given`` values that are not None (the command line's) override the file's."""
    path = Path(path)
    source = str(path)
    raw = read_toml(path, "sweep file")
    unknown = set(raw) - SPEC_KEYS
    if unknown:
        raise _error(source, f"unknown key(s) {', '.join(sorted(map(repr, unknown)))}; allowed: "
                             f"{', '.join(sorted(SPEC_KEYS))}")
    resources = raw.get("resources", {})
    if not isinstance(resources, dict) or set(resources) - RESOURCE_KEYS:
        raise _error(source, f"[resources] allows only {', '.join(sorted(RESOURCE_KEYS))}; got {resources!r}")
    overrides = raw.get("set", {})
    if not isinstance(overrides, dict):
        raise _error(source, "[set] must be a table of dotted config keys, e.g. \"train.steps\" = 1000")
    configs = raw.get("configs")
    if isinstance(configs, str):
        configs = [configs]
    if not isinstance(configs, list):
        raise _error(source, "configs must be a list of configuration files or globs")
    base = path.parent
    configs = [c if Path(c).is_absolute() or Path(c).exists() else str(base / c) for c in configs]
    merged = {"configs": configs, "algos": raw.get("algos"), "seeds": raw.get("seeds"), "out": raw.get("out"),
              "overrides": {**overrides, **(given.pop("overrides", None) or {})},
              "workers": raw.get("workers", 1), "cpus": resources.get("cpus", 1.0),
              "gpus": resources.get("gpus", 0.0), "retries": resources.get("retries", 3),
              "devices": resources.get("devices", 1),
              "search": raw.get("search")}
    merged.update({k: v for k, v in given.items() if v is not None})
    return build_sweep(source=source, **merged)


# --- one run, in a worker process ------------------------------------------------------------------

def execute_run(spec: RunSpec, devices: int = 1) -> dict:
    """Train (or skip, or resume) one run, data-parallel over ``devices`` devices of this worker; return a small
    summary and the result JSON text (``{"busy": message}`` for a run another process is training)."""
    request_cpu_devices(devices)   # a fresh worker: before JAX starts (on an accelerator its own devices count)
    runtime.enable_compilation_cache()  # a worker process: the driver's cache folder, from the environment
    try:
        return _execute_run(spec, devices)
    except RunBusy as busy:
        return {"busy": str(busy)}


def _execute_run(spec: RunSpec, devices: int) -> dict:
    config = spec.config()
    result_path, checkpoint_path = run_paths(config, spec.algo, spec.seed)
    kill_step = os.environ.get(KILL_ENV)
    marker = checkpoint_path.with_suffix(".killed")
    if kill_step and not result_path.exists() and not marker.exists():
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        try:
            run_one(config, spec.algo, spec.seed, resume=True, progress=False, stop_at_step=int(kill_step),
                    devices=devices)
        except Interrupted:
            os._exit(17)  # the worker dies after its checkpoint, as a killed node would
    path = run_one(config, spec.algo, spec.seed, resume=True, progress=False, devices=devices)
    result = read_result(path)
    return {"path": str(path), "out": str(config.out), "name": config.name, "algo": spec.algo, "seed": spec.seed,
            "metric": result.get("metric"), "test": result.get("test_metric"),
            "best_val": result.get("best_val_metric"), "json": Path(path).read_text(encoding="utf-8")}


def _store(summary: dict) -> None:
    """Write a result received from a worker where the driver expects it, if it is not there yet."""
    path = Path(summary["path"])
    if not path.exists():
        atomic_write_bytes(path, summary["json"].encode())


# --- progress ----------------------------------------------------------------------------------------

class Progress:
    """Runs done / running / failed and the best test metric so far, on a tqdm bar."""

    def __init__(self, total: int, skipped: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, initial=skipped, desc="sweep", unit="run", mininterval=1.0, disable=None,
                        file=sys.stderr)
        self.done, self.failed, self.running, self.best = skipped, 0, 0, None

    def update(self, running: int, finished: dict | None = None, failed: bool = False):
        self.running = running
        if failed:
            self.failed += 1
            self.bar.update(1)
        elif finished is not None:
            self.done += 1
            test = finished.get("test")
            if isinstance(test, (int, float)):
                better = (self.best is None or
                          (test < self.best[0] if finished.get("metric") == "mse" else test > self.best[0]))
                if better:
                    self.best = (test, f"{finished['name']} {finished['algo']} {finished['seed']}")
            self.bar.update(1)
        best = "-" if self.best is None else f"{self.best[0]:.4g} ({self.best[1]})"
        self.bar.set_postfix_str(f"done {self.done} running {self.running} failed {self.failed} best {best}")

    def close(self):
        self.bar.close()


# --- executors -----------------------------------------------------------------------------------------

def pending_runs(sweep: Sweep) -> tuple[list[RunSpec], int]:
    """(the runs whose result file does not exist yet, how many of the sweep's runs are done)."""
    pending = [spec for spec in sweep.runs if not run_paths(spec.config(), spec.algo, spec.seed)[0].exists()]
    return pending, len(sweep.runs) - len(pending)


def run_local(sweep: Sweep, log=print) -> dict:
    """Run the pending runs on a local pool of ``sweep.workers`` processes (one fresh process per run).

    A run whose worker dies is resubmitted up to ``sweep.retries`` times (it resumes from its
    checkpoint); a run that raises an error is reported failed and the others go on.
    """
    pending, skipped = pending_runs(sweep)
    progress = Progress(len(sweep.runs), skipped)
    outcome = {"done": [], "failed": [], "skipped": skipped, "busy": []}
    attempts = {spec: 0 for spec in pending}
    context = multiprocessing.get_context("spawn")
    while pending:
        retry = []
        with futures.ProcessPoolExecutor(max_workers=sweep.workers, mp_context=context,
                                         max_tasks_per_child=1) as pool:
            running = {pool.submit(execute_run, spec, sweep.devices): spec for spec in pending}
            progress.update(len(running))
            try:
                for future in futures.as_completed(running):
                    spec = running[future]
                    left = sum(not f.done() for f in running)
                    try:
                        summary = future.result()
                    except futures.process.BrokenProcessPool:
                        attempts[spec] += 1
                        if attempts[spec] <= sweep.retries:
                            retry.append(spec)
                            progress.update(left)
                            continue
                        outcome["failed"].append((spec, "worker died"))
                        progress.update(left, failed=True)
                        continue
                    except Exception as error:  # noqa: BLE001 - one failed run must not stop the sweep
                        outcome["failed"].append((spec, f"{type(error).__name__}: {error}"))
                        progress.update(left, failed=True)
                        continue
                    if "busy" in summary:
                        outcome["busy"].append((spec, summary["busy"]))
                        progress.update(left)
                        continue
                    _store(summary)
                    outcome["done"].append(summary)
                    progress.update(left, finished=summary)
            except KeyboardInterrupt:
                pool.shutdown(wait=True, cancel_futures=True)
                progress.close()
                raise
        if retry:
            log(f"sweep: {len(retry)} run(s) lost their worker; resuming from their checkpoints")
        pending = retry
    progress.close()
    return outcome


def ray_resources(sweep: Sweep, cluster_gpus: float) -> dict:
    """The options of each run's Ray task: CPUs and GPUs reserved, retries. A run over several devices takes
    that many GPUs where the cluster has some (unless ``gpus`` was set), else that many CPUs, and a fresh
    worker (``max_calls=1``: JAX picks its devices once per process)."""
    options = {"num_cpus": sweep.cpus, "num_gpus": sweep.gpus, "max_retries": sweep.retries}
    if sweep.devices > 1:
        if cluster_gpus > 0 and sweep.gpus == 0:
            options["num_gpus"] = float(sweep.devices)
        elif cluster_gpus == 0:
            options["num_cpus"] = max(sweep.cpus, float(sweep.devices))
        options["max_calls"] = 1
    return options


def run_ray(sweep: Sweep, address: str | None = None, log=print, local_cpus: int | None = None) -> dict:
    """The same runs as Ray tasks (per-run CPUs/GPUs, ``max_retries`` on worker death).

    ``address``: an existing cluster ("auto", "HOST:PORT" or "ray://HOST:PORT"); None starts a local
    instance bound to the loopback interface with ``local_cpus`` CPUs (default: all).
    """
    if address is None:
        # Ray resolves a single-node instance to the loopback address only with this switch (read when
        # ray is imported); a local sweep has no reason to listen on the network.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ValueError("--ray needs Ray: pip install 'hamecho[ray]' (or pip install 'ray>=2.9'); without it, "
                         "leave out --ray to use the local process pool") from None
    pending, skipped = pending_runs(sweep)
    progress = Progress(len(sweep.runs), skipped)
    outcome = {"done": [], "failed": [], "skipped": skipped, "busy": []}
    if not pending:
        progress.close()
        return outcome
    env = {k: os.environ[k] for k in (KILL_ENV, "HAMECHO_DATA", "HAMECHO_CACHE", runtime.COMPILE_CACHE_ENV,
                                           runtime.HUGE_PAGES_ENV, "PYTHONPATH") if k in os.environ}
    options = dict(ignore_reinit_error=True, include_dashboard=False, log_to_driver=False,
                   runtime_env={"env_vars": env} if env else None)
    if address is None:
        options.update(num_cpus=local_cpus)
    ray.init(address=address, **options)
    try:
        task = ray.remote(**ray_resources(sweep, ray.cluster_resources().get("GPU", 0)))(execute_run)
        refs = {task.remote(spec, sweep.devices): spec for spec in pending}
        progress.update(len(refs))
        while refs:
            ready, _ = ray.wait(list(refs), num_returns=1, timeout=2.0)
            for ref in ready:
                spec = refs.pop(ref)
                try:
                    summary = ray.get(ref)
                except Exception as error:  # noqa: BLE001 - includes WorkerCrashedError after the retries
                    message = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
                    outcome["failed"].append((spec, message))
                    progress.update(len(refs), failed=True)
                    continue
                if "busy" in summary:
                    outcome["busy"].append((spec, summary["busy"]))
                    progress.update(len(refs))
                    continue
                _store(summary)
                outcome["done"].append(summary)
                progress.update(len(refs), finished=summary)
    finally:
        progress.close()
        ray.shutdown()
    return outcome


# --- hyperparameter selection ----------------------------------------------------------------------

def select(sweep: Sweep) -> list[dict]:
    """Per searched configuration and algorithm: every combination ranked by its mean best validation
    metric over the finished seeds (accuracy: higher is better; MSE: lower), the best one selected.

    Test metrics are carried along for the record only; they never influence the ranking. Each
    selection is written atomically to ``<out>/<config name>/search.json``. Returns the selections.
    """
    selections = []
    for group in sweep.search:
        cells: dict[tuple[str, int], list[dict]] = {}
        metric = None
        for spec in sweep.runs:
            config = spec.config()
            if config.name not in group.names:
                continue
            index = group.names.index(config.name)
            result_path = run_paths(config, spec.algo, spec.seed)[0]
            cells.setdefault((spec.algo, index), [])
            if result_path.exists():
                result = read_result(result_path)
                metric = result.get("metric", metric)
                cells[(spec.algo, index)].append(result)
        per_algo = {}
        for algo in sorted({algo for algo, _ in cells}):
            ranking = []
            for index, combo in enumerate(group.combos):
                results = cells.get((algo, index), [])
                vals = [r["best_val_metric"] for r in results if isinstance(r.get("best_val_metric"), (int, float))]
                tests = [r["test_metric"] for r in results if isinstance(r.get("test_metric"), (int, float))]
                ranking.append({"label": combo_label(combo), "settings": dict(combo), "config_name": group.names[index],
                                "seeds_done": len(results), "val_mean": float(sum(vals) / len(vals)) if vals else None,
                                "val_values": vals, "test_mean": float(sum(tests) / len(tests)) if tests else None})
            lower_is_better = metric == "mse"
            scored = [r for r in ranking if r["val_mean"] is not None]
            scored.sort(key=lambda r: r["val_mean"] if lower_is_better else -r["val_mean"])
            unscored = [r for r in ranking if r["val_mean"] is None]
            per_algo[algo] = {"selected": scored[0] if scored else None, "ranking": scored + unscored}
        selection = {"config_name": group.base_name, "config_path": group.base_path, "metric": metric,
                     "selected_on": "mean best validation metric over seeds (test never used)",
                     "grid": {key: sorted({v for combo in group.combos for k, v in combo if k == key}, key=str)
                              for key in dict(group.combos[0])},
                     "algos": per_algo}
        path = config_dir(group.out, group.base_name)
        atomic_write_json(path / "search.json", selection)
        selection["path"] = str(path / "search.json")
        selections.append(selection)
    return selections


def print_selection(selection: dict, top: int = 5, file=None) -> None:
    file = sys.stdout if file is None else file
    print(f"search {selection['config_name']} ({selection['metric'] or 'no results yet'}, ranked on validation; "
          f"{selection['path']}):", file=file)
    for algo, entry in selection["algos"].items():
        chosen = entry["selected"]
        print(f"  {algo}: selected {chosen['label'] if chosen else '(no finished run)'}", file=file)
        for row in entry["ranking"][:top]:
            val = "n/a" if row["val_mean"] is None else f"{row['val_mean']:.4g}"
            test = "n/a" if row["test_mean"] is None else f"{row['test_mean']:.4g}"
            print(f"    val {val:>8}  (test {test:>8})  seeds {row['seeds_done']}  {row['label']}", file=file)
