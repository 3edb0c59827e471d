"""The main job (``hamecho run``, what ``make run`` calls): RHEL vs BPTT on a real offline dataset, end to end.

Trains the linear and the nonlinear HSSM of ``configs/{linear,nonlinear}/JapaneseVowels.toml`` with
BPTT and with RHEL (same seeds, hence the same splits and initial models; same steps; same model),
then prints the comparison table and the RHEL-vs-BPTT gradient-alignment table at the trained model
size (``hamecho.tools.gradcheck``), and writes the report and plots to the output folder. With
``memory_length`` (``hamecho run``'s default: MEMORY_LENGTH) it ends with the memory part: one
measured training step per memory strategy — BPTT, BPTT with time chunks, RHEL streaming — at that
length, each in its own process, their peak memory side by side (``hamecho.tools.stepmemory``;
written to memory.json). With ``longrange_length`` (``hamecho run``'s default: LONGRANGE_LENGTH) it ends with
the long-range part: the first-5 % task at that length trained by RHEL + Streaming and by BPTT + TimeChunks
from the same seed (``hamecho.tools.longrange``, into OUT/longrange), test accuracies and peaks side by side.

Finished runs are reused (``hamecho.training.run_one`` is idempotent) and interrupted ones resume from their
checkpoints, so running it again after Ctrl-C continues where it stopped.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from ..training import format_metric, load_config, load_data, read_result, run_one
from . import gradcheck as gc
from . import longrange, stepmemory
from .report import paired_differences, table_paired, table_paper_layout, table_runs, write_report

DEFAULT_CONFIGS = ("configs/linear/JapaneseVowels.toml", "configs/nonlinear/JapaneseVowels.toml")
DEFAULT_OUT = "runs/main"
# The long-range part: first-5 % (4 classes, the class in the first 5 %) at L = 10,000, a tiny HSSM trained by RHEL
# + Streaming and by BPTT + TimeChunks from the same seed: a length curriculum (steps at L / 10 first), then steps
# at L, θ at min(lr, 6 / L) (docs/longrange.md; sized for make run's budget there).
LONGRANGE_LENGTH = 10_000
LONGRANGE_SETTINGS = dict(steps=40, batch=8, curriculum_steps=150, test_size=100)
# The memory part's sequence length: long enough that BPTT's stored trajectory dominates its peak (3.2 GiB,
# against 0.44 GiB streaming), short enough that the three steps take about two minutes on two CPU cores.
MEMORY_LENGTH = 30_000


def resolve_config_path(path: str) -> Path:
    """``path`` as given, else relative to the repository root (for an editable install run elsewhere)."""
    candidate = Path(path)
    if candidate.is_file() or candidate.is_absolute():
        return candidate
    repo_root = Path(__file__).resolve().parents[3]   # src/hamecho/tools/mainjob.py
    fallback = repo_root / path
    return fallback if fallback.is_file() else candidate


def check_fair(configs) -> None:
    """The comparison is only meaningful if both algorithms see the same seeds, steps and data."""
    for c in configs:
        if set(c.train.algos) != {"bptt", "rhel"}:
            raise ValueError(f"{c.source}: the main job compares both algorithms; train.algos must be "
                             f"['bptt', 'rhel'], got {list(c.train.algos)}")
    datasets = {c.data.dataset for c in configs}
    seeds = {c.train.seeds for c in configs}
    steps = {c.train.steps for c in configs}
    if len(datasets) > 1 or len(seeds) > 1 or len(steps) > 1:
        raise ValueError("the main job's configs must share the dataset, seeds and steps; got "
                         f"datasets {sorted(datasets)}, seeds {sorted(seeds)}, steps {sorted(steps)}")


def run_main(config_paths=DEFAULT_CONFIGS, *, out: str = DEFAULT_OUT, seeds=None, steps=None, gradcheck: bool = True,
             progress: bool | None = None, echo=None, memory_length: int | None = None,
             memory_shape: dict | None = None, longrange_length: int | None = None,
             longrange_settings: dict | None = None) -> dict:
    """Train every (model, algorithm, seed) of ``config_paths`` into ``out`` (``seeds``/``steps`` override the
    configs'), write the report, check the gradients at the trained size (``gradcheck``), measure the memory
    part at ``memory_length`` (None: not; ``memory_shape`` overrides the model's shape, for tests), train the
    long-range part at ``longrange_length`` (None: not; ``longrange_settings`` override LONGRANGE_SETTINGS) and
    print it all through ``echo`` (default: print). Returns {"report": ..., "gradcheck": {hru: report}, "memory":
    rows or None, "longrange": rows or None, "elapsed_s": ...}."""
    if echo is None:
        echo = lambda line: print(line, flush=True)
    start = time.perf_counter()
    overrides = {"out": out}
    if seeds is not None:
        overrides["train.seeds"] = list(seeds)
    if steps is not None:
        overrides["train.steps"] = int(steps)  # eval_every lowered to it where needed, with a note (one rule)
    configs = [load_config(resolve_config_path(p), overrides, note=echo) for p in config_paths]
    check_fair(configs)
    first = configs[0]
    data = load_data(first, first.train.seeds[0])
    echo(f"hamecho main job: {first.data.dataset} ({len(data.x_train)}/{len(data.x_val)}/{len(data.x_test)} "
         f"train/val/test cases, length {data.length}, {data.channels} channels, {data.num_classes} classes; "
         f"found in {data.source})")
    echo("models: " + "; ".join(f"{c.model.hru} HSSM ({c.model.blocks} blocks, hidden {c.model.hidden}, "
                                 f"state {c.model.state}" + (f", initial step {c.model.step:g}"
                                                             if c.model.hru == "nonlinear" else "") + ")"
                                 for c in configs))
    t = first.train
    echo(f"protocol: BPTT and RHEL (eps = {t.eps}), seeds {', '.join(map(str, t.seeds))}, {t.steps} steps each, "
         f"batch {t.batch_size}, Adam lr {t.lr:g}, {t.dtype}, validation every {t.eval_every} steps, test accuracy "
         f"taken at the last evaluation with the best validation accuracy; results in {out}/")
    echo("")
    train_start = time.perf_counter()
    for c in configs:
        for seed in c.train.seeds:
            for algo in c.train.algos:
                path = run_one(c, algo, seed, out, resume=True, progress=progress)
                r = read_result(path)
                test = format_metric(r["test_metric"], 100, "5.1f")
                val = format_metric(r["best_val_metric"], 100, "5.1f")
                echo(f"  {c.model.hru:9s} {algo.upper():4s} seed {seed}: test accuracy {test} % "
                     f"(best val {val} % at step {r['best_step']}), "
                     f"{r['steps']} steps, {r['wall_time_s']:.1f} s")
    echo(f"training: {time.perf_counter() - train_start:.0f} s in this call (per-run times include JAX "
         "compilation, paid by the first seed of each model and algorithm)")
    report = write_report(out)
    rows = [r for r in report["rows"] if r["config"] in {c.name for c in configs}]
    results = [r for r in report["results"] if r["config_name"] in {c.name for c in configs}]
    echo("")
    echo("== Comparison (test accuracy %, mean ± population std over seeds) ==")
    echo(table_paper_layout(rows))
    echo("")
    echo(table_runs(rows))
    echo("")
    echo("RHEL − BPTT, paired by seed (same split, same initial model):")
    echo(table_paired(paired_differences(results)))

    checks = {}
    if gradcheck:
        for c in configs:
            m = c.model
            gc_batch = min(c.train.batch_size, 8)
            report_gc = gc.run_gradcheck(hru=m.hru, blocks=m.blocks, hidden=m.hidden, state=m.state,
                                         length=data.length, batch=gc_batch, in_dim=data.channels,
                                         classes=data.out_dim, step=m.step, dtype=c.train.dtype, eps=c.train.eps,
                                         seed=0, estimator=c.train.estimator, difference=c.train.difference)
            checks[m.hru] = report_gc
            (Path(out) / f"gradcheck_{m.hru}.json").write_text(json.dumps(report_gc, indent=1))
            echo("")
            echo(f"== Gradient alignment: RHEL ({c.train.dtype}, eps = {c.train.eps}) vs BPTT (float64), {m.hru} HSSM "
                 f"at the trained size ({m.blocks} blocks, hidden {m.hidden}, state {m.state}), random model and "
                 f"batch of {gc_batch}, L = {data.length} ==")
            shown = [row for row in report_gc["params"] if row["name"].startswith(("hru.", "encoder."))]
            echo(gc.format_table({**report_gc, "params": shown}))
            worst = min(report_gc["params"], key=lambda row: row["cosine"])
            echo(f"(HRU and encoder arrays shown; all {len(report_gc['params'])} arrays in gradcheck_{m.hru}.json: "
                 f"worst cosine {worst['cosine']:.9f}, max rel err "
                 f"{max(row['rel_err'] for row in report_gc['params']):.2e})")
    memory = None
    if memory_length:
        memory = memory_part(memory_length, out, echo, shape=memory_shape)
    long_rows = None
    if longrange_length:
        long_rows = longrange_part(longrange_length, out, echo, settings=longrange_settings, progress=progress)
    elapsed = time.perf_counter() - start
    echo("")
    echo("written: " + ", ".join(str(p) for p in report["files"].values())
         + (", " + ", ".join(str(Path(out) / f"gradcheck_{h}.json") for h in checks) if checks else "")
         + (f", {Path(out) / 'memory.json'}" if memory is not None else "")
         + (f", {Path(out) / 'longrange'}/" if long_rows is not None else ""))
    echo(f"main job done in {elapsed:.0f} s (runs already in {out}/ are reused; delete it to retrain)")
    return {"report": report, "gradcheck": checks, "memory": memory, "longrange": long_rows, "elapsed_s": elapsed}


def memory_part(length: int, out, echo, shape: dict | None = None) -> list[dict]:
    """One measured training step per method of ``stepmemory.METHODS`` at ``length``, each in its own
    process; prints the table and writes ``out``/memory.json. Returns the rows."""
    s = {**stepmemory.SHAPE, **(shape or {})}
    echo("")
    echo(f"== Memory: one training step at L = {length:,} ({s['blocks']} blocks, hidden {s['hidden']}, state "
         f"{s['state']}, batch {s['batch']}, norm \"layer\", float32 model, float64 cores), each method in its own "
         "process ==")
    rows = []
    for method in stepmemory.METHODS:
        rows.append(stepmemory.measure(method, length, shape=shape))
    echo(stepmemory.format_table(rows))
    echo(f"(whole-process peak resident memory: Python, JAX, compilation, the data and the step; the raw input "
         f"x is {stepmemory.input_bytes(length, shape) / 2**20:.1f} MiB. Against L, 10^3 to 10^7: docs/memory.md)")
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "memory.json").write_text(json.dumps(rows, indent=1) + "\n")
    return rows


def longrange_part(length: int, out, echo, settings: dict | None = None, progress: bool | None = None) -> list[dict]:
    """The first-5 % task at ``length`` trained by RHEL + Streaming and by BPTT + TimeChunks (same seed and model,
    LONGRANGE_SETTINGS overridden by ``settings``), each in its own process, into ``out``/longrange (reused when
    finished, resumed when interrupted); prints the test accuracies and peaks side by side. Returns the rows."""
    s = longrange.RunSettings(**{**LONGRANGE_SETTINGS, **(settings or {})})
    echo("")
    echo(f"== Long range: the first-5 % task (4 classes, the class in the first 5 % of the sequence) at "
         f"L = {length:,}, {s.blocks}-block HSSM (hidden {s.hidden}, state {s.state}, norm \"layer\"), batch "
         f"{s.batch}, Adam {s.lr:g} with the oscillators' θ at min(lr, 6/L)"
         + (f", {s.curriculum_steps} steps at L = {length // s.curriculum_factor:,} first" if s.curriculum_steps
            else "") + f", then {s.steps} steps at L; same seed and model for both methods ==")
    cells = longrange.grid_cells([length], ["first5"], ["streaming", "bptt_chunks"], [0], s)
    rows = longrange.run_grid(cells, Path(out) / "longrange", progress=progress, echo=lambda line: None)
    longrange.write_outputs(rows, Path(out) / "longrange", command="hamecho run (the long-range part)")
    for row in rows:
        echo("  " + longrange.format_row(row))
    echo(f"(test accuracy over {s.test_size} test sequences; chance 25 %. Peak: the whole process's VmHWM. Longer "
         "L and more methods: hamecho longrange, docs/longrange.md)")
    return rows
