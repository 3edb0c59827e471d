"""hamecho.runtime: the persistent compilation cache and huge pages for the CLI; the timing helpers."""
import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from hamecho import runtime
from hamecho.cli import build_parser
from hamecho.tools import timing

PROBE = """
import json, sys
import jax
from hamecho import runtime
events = []
jax.monitoring.register_event_listener(lambda event, **kw: events.append(event))
folder = runtime.enable_compilation_cache()
jax.jit(lambda x: x * 2 + 1)(jax.numpy.arange(3.0)).block_until_ready()
print(json.dumps({"folder": None if folder is None else str(folder),
                  "hits": events.count("/jax/compilation_cache/cache_hits")}))
"""


def _probe(env) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_folder_follows_the_environment(monkeypatch, tmp_path):
    for name in (runtime.COMPILE_CACHE_ENV, "HAMECHO_CACHE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert runtime.compilation_cache_dir() == tmp_path / ".cache" / "hamecho" / "jax"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert runtime.compilation_cache_dir() == tmp_path / "xdg" / "hamecho" / "jax"
    monkeypatch.setenv("HAMECHO_CACHE", str(tmp_path / "h"))
    assert runtime.compilation_cache_dir() == tmp_path / "h" / "jax"
    monkeypatch.setenv(runtime.COMPILE_CACHE_ENV, str(tmp_path / "c"))
    assert runtime.compilation_cache_dir() == tmp_path / "c"
    for off in ("off", "0", "False", "no"):
        monkeypatch.setenv(runtime.COMPILE_CACHE_ENV, off)
        assert runtime.compilation_cache_dir() is None


def test_a_second_process_loads_what_the_first_compiled(tmp_path):
    env = {**os.environ, runtime.COMPILE_CACHE_ENV: str(tmp_path / "jax")}
    first = _probe(env)
    assert first["folder"] == str(tmp_path / "jax") and first["hits"] == 0
    assert any((tmp_path / "jax").iterdir())  # a compilation well under a second is kept too
    assert _probe(env)["hits"] >= 1
    off = _probe({**env, runtime.COMPILE_CACHE_ENV: "off"})
    assert off == {"folder": None, "hits": 0}


def test_the_command_line_turns_the_cache_and_huge_pages_off():
    args = build_parser().parse_args(["--no-compile-cache", "--no-huge-pages", "report", "runs"])
    assert args.no_compile_cache and args.no_huge_pages
    args = build_parser().parse_args(["report", "runs"])
    assert not args.no_compile_cache and not args.no_huge_pages


def test_huge_pages_are_added_to_glibc_tunables_not_put_in_their_place():
    assert runtime.with_huge_pages({})["GLIBC_TUNABLES"] == runtime.HUGE_PAGES_TUNABLE
    other = runtime.with_huge_pages({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"})["GLIBC_TUNABLES"]
    assert other == "glibc.malloc.arena_max=2:" + runtime.HUGE_PAGES_TUNABLE
    assert "GLIBC_TUNABLES" not in runtime.with_huge_pages({runtime.HUGE_PAGES_ENV: "off"})
    chosen = {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}
    assert runtime.with_huge_pages(chosen) == chosen  # the user's own choice stays


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tunables are Linux's")
def test_the_command_restarts_itself_once_with_huge_pages(tmp_path):
    """What ``hamecho`` does first: re-execute with GLIBC_TUNABLES set (here into a probe module that prints
    its environment instead of hamecho.cli), and not again once they are set."""
    (tmp_path / "probe.py").write_text(textwrap.dedent("""
        import json, os, sys
        from hamecho import runtime
        if "--first" in sys.argv:
            runtime.reexec_with_huge_pages(["--again"], module="probe")
        print(json.dumps({"argv": sys.argv[1:], "tunables": os.environ.get("GLIBC_TUNABLES"),
                          "state": runtime.huge_pages_state()}))
    """))
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", runtime.HUGE_PAGES_ENV)}
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    run = lambda env: json.loads(subprocess.run([sys.executable, "-m", "probe", "--first"], capture_output=True,
                                                text=True, env=env, cwd=tmp_path, timeout=120).stdout)
    if not runtime._glibc():
        pytest.skip("not glibc")
    assert run(env) == {"argv": ["--again"], "tunables": runtime.HUGE_PAGES_TUNABLE, "state": "on"}
    assert run({**env, runtime.HUGE_PAGES_ENV: "off"}) == {"argv": ["--first"], "tunables": None, "state": "off"}


def test_interleaved_rounds_rotate_the_order_and_ratios_are_taken_per_round():
    order = []
    cases = {name: (lambda name=name: order.append(name)) for name in ("a", "b", "c")}
    times = timing.interleave(cases, rounds=3, warmup=1)
    assert order[:3] == ["a", "b", "c"]  # the warm-up
    assert order[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {len(v) for v in times.values()} == {3}
    fake = {"a": [2.0, 4.0, 3.0], "b": [1.0, 1.0, 2.0]}
    r = timing.ratio(fake, "a", "b")
    assert r["per_round"] == [2.0, 4.0, 1.5] and r["median"] == 2.0 and (r["min"], r["max"]) == (1.5, 4.0)
    s = timing.spread([3.0, 1.0, 2.0, 10.0])
    assert (s["median"], s["min"], s["max"], s["n"]) == (2.5, 1.0, 10.0, 4)
    state = timing.machine_state()
    assert state["huge_pages"] in ("on", "off") and state["cpus"] >= 1


def test_the_cpu_clock_counts_work_not_waiting():
    """``clock="cpu"`` (what the measurements on a shared core use) counts this process's processor time:
    a sleep costs next to none of it, a fixed amount of arithmetic its own share whatever the load."""
    cases = {"sleep": lambda: time.sleep(0.05), "work": lambda: sum(i * i for i in range(3_000_000))}
    cpu = timing.interleave(cases, rounds=2, warmup=0, clock="cpu")
    wall = timing.interleave({"sleep": cases["sleep"]}, rounds=1, warmup=0, clock="wall")
    assert wall["sleep"][0] >= 0.05
    assert min(cpu["work"]) > max(cpu["sleep"]) + 0.02  # os.times ticks in hundredths of a second
    with pytest.raises(ValueError, match="clock must be one of"):
        timing.interleave(cases, rounds=1, clock="gpu")
