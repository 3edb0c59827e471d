"""`hamecho bench`: the --quick --json schema (not the timings), resume, and the target marks."""
import json
import subprocess
import sys

import pytest

from hamecho.tools import bench

ROW_TYPES = {"algo": str, "model": str, "batch": int, "length": int, "step_time_s": float, "peak_mem_bytes": int}


@pytest.mark.parametrize("extra,algos,models,length", [
    (["--algos", "rhel", "--models", "linear", "--lengths", "200"], ("rhel",), ("linear",), 200),  # CI: one case
    pytest.param([], bench.QUICK_ALGOS, bench.MODELS, 1000, marks=pytest.mark.slow),  # the --quick grid (~3 min)
])
def test_quick_json_schema(tmp_path, extra, algos, models, length):
    done = subprocess.run([sys.executable, "-m", "hamecho.cli", "bench", "--quick", "--json", "--reps", "1",
                           "--rounds", "2", *extra, "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(done.stdout.strip().splitlines()[-1])
    assert isinstance(rows, list) and len(rows) == len(algos) * len(models)
    for row in rows:
        assert "skipped" not in row, row
        for key, kind in ROW_TYPES.items():
            assert isinstance(row[key], kind), (key, row)
        assert row["algo"] in ("rhel", "bptt", "bptt_ckpt") and row["model"] in ("linear", "nonlinear")
        assert (row["batch"], row["length"]) == (4, length)
        assert row["step_time_s"] > 0 and row["peak_mem_bytes"] > row["baseline_bytes"] > 0
        # timed interleaved with the forward pass in one process; the fresh process's time kept beside it
        assert row["timing"] == "interleaved" and row["rounds"] == 2 and row["fresh_step_time_s"] > 0
        assert row["step_spread"]["n"] == 2 and row["step_spread"]["min"] <= row["step_time_s"]
        assert row["step_over_forward"]["median"] > 0 and row["forward_time_s"] > 0
        assert row["machine"]["huge_pages"] in ("on", "off") and row["huge_pages"] == row["machine"]["huge_pages"]
    assert {(r["algo"], r["model"]) for r in rows} == {(a, m) for a in algos for m in models}
    assert json.loads((tmp_path / "bench.json").read_text()) == rows
    assert (tmp_path / "bench.csv").read_text().count("\n") == len(rows) + 1
    markdown = (tmp_path / "bench.md").read_text()
    assert f"| linear | 4 | {length} | rhel |" in markdown and "interleaved over rounds" in markdown


def _row(algo, model="linear", batch=4, length=17984, time_s=1.0, mem=2**30):
    return {"algo": algo, "model": model, "batch": batch, "length": length, "step_time_s": time_s,
            "peak_mem_bytes": mem, "reps": 5, "core_dtype": "auto", "rounds": 5}


def _no_group(*args, **kwargs):
    raise AssertionError("no interleaved timing expected here")


def test_resume_reuses_measured_rows_and_remeasures_skipped_ones(monkeypatch):
    measured = []

    def fake_subprocess(algo, model, batch, length, reps, core_dtype, timeout, *chunk_and_norm):
        measured.append((algo, model))
        return _row(algo, model, batch, length)

    monkeypatch.setattr(bench, "run_case_subprocess", fake_subprocess)
    monkeypatch.setattr(bench, "run_group_subprocess", lambda algos, *rest: {"skipped": "not timed in this test"})
    previous = [_row("rhel"), {**_row("bptt"), "skipped": "timed out"}, {**_row("bptt_ckpt"), "reps": 3}]
    rows = bench.run_grid(bench.QUICK_ALGOS, ("linear",), (17984,), (4,), previous=previous)
    assert rows[0] == previous[0]
    assert measured == [("bptt", "linear"), ("bptt_ckpt", "linear")]  # skipped and other-reps rows re-run


def test_memory_in_fresh_processes_time_interleaved_per_group_and_ratios_per_round(monkeypatch):
    fresh, groups, written = [], [], []

    def fake_subprocess(algo, model, batch, length, reps, core_dtype, timeout, *chunk_and_norm):
        fresh.append((algo, model))
        return _row(algo, model, batch, length, time_s=9.0, mem=len(fresh) * 2**20)

    def fake_group(algos, model, batch, length, rounds, *rest):
        groups.append((tuple(algos), model, rounds))
        per_round = {"forward": [1.0, 2.0, 1.0], "rhel": [3.0, 4.0, 2.0], "bptt": [2.0, 8.0, 1.0]}
        spread = lambda v: {"median": sorted(v)[1], "min": min(v), "max": max(v), "q1": 0, "q3": 0, "n": 3}
        return {"forward": spread(per_round["forward"]), "per_round": per_round, "machine": {"load": [1.0]},
                "steps": {a: {"spread": spread(per_round[a]), "over_forward": {"median": 2.0, "min": 1, "max": 3}}
                          for a in algos}}

    monkeypatch.setattr(bench, "run_case_subprocess", fake_subprocess)
    monkeypatch.setattr(bench, "run_group_subprocess", fake_group)
    rows = bench.run_grid(("rhel", "bptt"), ("linear", "nonlinear"), (17984,), (4,), rounds=3,
                          on_row=lambda rows: written.append(len(rows)))
    assert fresh == [("rhel", "linear"), ("bptt", "linear"), ("rhel", "nonlinear"), ("bptt", "nonlinear")]
    assert groups == [(("rhel", "bptt"), "linear", 3), (("rhel", "bptt"), "nonlinear", 3)]  # one process each
    rhel, bptt = rows[0], rows[1]
    assert (rhel["step_time_s"], rhel["fresh_step_time_s"], rhel["timing"]) == (3.0, 9.0, "interleaved")
    assert rhel["peak_mem_bytes"] == 2**20 and bptt["peak_mem_bytes"] == 2 * 2**20  # from the fresh processes
    assert rhel["step_over_forward"]["median"] == 2.0 and rhel["forward_time_s"] == 1.0
    # RHEL / BPTT is the median of the per-round ratios (1.5, 0.5, 2.0), not the ratio of the medians (3/2)
    assert bench.time_ratio(rhel, bptt) == 1.5
    assert "| linear | 4 | 17984 | rhel | 3.000 | 1.50 |" in bench.format_markdown(rows)
    assert written == [1, 2, 3, 4, 4, 4]  # partial outputs after every measurement
    assert bench.run_grid(("rhel",), ("linear",), (17984,), (4,), rounds=0)[0]["timing"] == "fresh"


@pytest.mark.parametrize("rhel_time, rhel_mem, expect", [(0.9, 2**30, "met"), (1.1, 2**30, "MISSED")])
def test_markdown_marks_the_target_rows(rhel_time, rhel_mem, expect):
    rows = [_row("rhel", time_s=rhel_time, mem=rhel_mem), _row("bptt"),
            _row("rhel", length=49920, mem=2**28), _row("bptt", length=49920, mem=2**30)]
    table = bench.format_markdown(rows)
    assert f"time ≤ 1.0×: {expect}" in table
    assert "memory ≤ 0.25×: met" in table  # 0.25 exactly: 2**28 / 2**30


def test_outputs_cover_every_algorithm(tmp_path):
    rows = [_row(algo, length=length, time_s=0.5 + i, mem=2**30 + i) for i, algo in enumerate(bench.ALGOS)
            for length in (1000, 4000)]
    written = bench.write_outputs(rows, tmp_path)
    assert {p.name for p in written} >= {"bench.md", "bench.csv", "bench.json", "bench.png"}
    table = (tmp_path / "bench.md").read_text()
    for algo in bench.ALGOS:
        assert f"| {algo} |" in table


# --- rhel_streaming (issue #14) -------------------------------------------------------------------------

def test_streaming_runs_with_norm_layer_and_the_cases_beside_it_too():
    assert bench.norm_for(("rhel", "bptt")) == "batch"                     # as before the option
    assert bench.norm_for(("rhel_streaming", "bptt_chunked")) == "layer"   # every case: the same model
    assert bench.norm_for(("rhel", "bptt"), "layer") == "layer"
    with pytest.raises(ValueError, match="rhel_streaming with --norm batch: .* needs HSSM\\(norm='layer'\\)"):
        bench.norm_for(("rhel_streaming", "bptt"), "batch")


def test_grid_hands_the_norm_and_the_stream_chunk_to_every_case(monkeypatch):
    seen = []

    def fake_subprocess(algo, model, batch, length, reps, core_dtype, timeout, block_chunk, norm, stream_chunk):
        seen.append((algo, norm, block_chunk, stream_chunk))
        return {**_row(algo, model, batch, length), "norm": norm}

    monkeypatch.setattr(bench, "run_case_subprocess", fake_subprocess)
    monkeypatch.setattr(bench, "run_group_subprocess", lambda algos, model, batch, length, rounds, core_dtype,
                        timeout, block_chunk, norm, stream_chunk: seen.append(("group", norm, block_chunk,
                                                                             stream_chunk)) or {"skipped": "-"})
    bench.run_grid(("rhel_streaming", "bptt_chunked"), ("linear",), (17984,), (4,), stream_chunk=256)
    assert seen == [("rhel_streaming", "layer", 1024, 256), ("bptt_chunked", "layer", 1024, 256),
                    ("group", "layer", 1024, 256)]
    # a norm "batch" row of the same case is not reused for a norm "layer" run, and the other way round
    seen.clear()
    previous = [_row("rhel"), {**_row("bptt"), "norm": "layer"}]
    rows = bench.run_grid(("rhel", "bptt"), ("linear",), (17984,), (4,), previous=previous)
    assert rows[0] == previous[0] and [s[0] for s in seen] == ["bptt", "group"]


@pytest.mark.parametrize("streaming_time, expect", [(0.7, ["0.70× rhel met", "0.35× bptt met"]),
                                                    (1.5, ["1.50× rhel MISSED", "0.75× bptt met"])])
def test_markdown_marks_the_streaming_speed_target(streaming_time, expect):
    rows = [{**_row(a, time_s=t), "norm": "layer"} for a, t in (("rhel", 1.0), ("bptt", 2.0),
                                                                 ("rhel_streaming", streaming_time))]
    line = next(line for line in bench.format_markdown(rows).splitlines() if "| rhel_streaming |" in line)
    assert "time ≤ 1.0× rhel and bptt: " + ", ".join(expect) in line


def test_streaming_case_runs(tmp_path):
    """One real rhel_streaming case, tiny: its row says norm "layer" and the chunk; --norm batch is refused."""
    command = [sys.executable, "-m", "hamecho.cli", "bench", "--algos", "rhel_streaming", "--models", "linear",
               "--lengths", "40", "--batch", "2", "--reps", "1", "--rounds", "0", "--stream-chunk", "16", "--json",
               "--out", str(tmp_path)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [row] = json.loads(done.stdout.strip().splitlines()[-1])
    assert "skipped" not in row, row
    assert (row["algo"], row["norm"], row["stream_chunk"], row["length"]) == ("rhel_streaming", "layer", 16, 40)
    assert row["step_time_s"] > 0 and row["peak_mem_bytes"] > 0
    refused = subprocess.run(command + ["--norm", "batch"], capture_output=True, text=True, timeout=600)
    assert refused.returncode == 2 and "needs HSSM(norm='layer')" in refused.stderr


def test_a_childs_peak_is_its_own_not_its_parents():
    """ru_maxrss carries a parent's peak over into a child started by fork + exec (the main job's memory part
    runs its cases from a process that has trained models); process_peak_rss reads the child's own."""
    import numpy as np

    ballast = np.ones(96 * 2**20)   # float64: 768 MiB resident in this process
    code = ("import resource; from hamecho.tools.bench import process_peak_rss; "
            "print(process_peak_rss(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    own, inherited = map(int, done.stdout.split())
    assert inherited > ballast.nbytes > own + 2**28   # the child itself (Python + JAX) stays well below
