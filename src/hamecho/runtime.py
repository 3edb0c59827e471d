"""Process settings that make hamecho start fast: JAX's persistent compilation cache and huge pages.

    HAMECHO_COMPILE_CACHE=DIR   the compilation cache's folder (default: $HAMECHO_CACHE/jax, else
                                $XDG_CACHE_HOME/hamecho/jax, else ~/.cache/hamecho/jax)
    HAMECHO_COMPILE_CACHE=off   no persistent cache (also 0, false, no); ``hamecho --no-compile-cache``
    HAMECHO_HUGE_PAGES=off      the CLI leaves malloc as it is (also 0, false, no); ``hamecho --no-huge-pages``

**Compilation cache.** Every new shape or choice costs seconds of XLA compilation before its first
step (the training step at the paper's shapes: 7–11 s on 2 cores). :func:`enable_compilation_cache`
points JAX's persistent cache at a per-user folder, so a second process with the same shapes loads the
compiled step from disk instead (it still traces the step, a fraction of a second). Every compilation is
kept, however short (``jax_persistent_cache_min_compile_time_secs = 0``: the tests compile thousands
of small functions), and the folder is bounded (``CACHE_MAX_BYTES``, least recently used entries go
first; with ``filelock`` installed, which the bound needs). The CLI, ``make run`` and the tests turn
it on; in your own scripts or notebooks call ``hamecho.enable_compilation_cache()`` once, before the
first compilation. The cache is code JAX runs: keep it in a folder only you can write to.

**Huge pages.** glibc's malloc backs its memory with transparent huge pages when the process starts with
``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` (for kernels whose THP mode is "madvise", the common
default). A training step touches gigabytes of fresh memory, and on the machines measured the page faults
of 4 KiB pages cost a large part of it (docs/performance.md). The variable must be set before the process
starts, so the ``hamecho`` command re-executes itself once with it (:func:`reexec_with_huge_pages`),
unless it is already set, turned off, or glibc is not the C library. :func:`huge_pages_state` says what a
process runs with; every benchmark records it.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

COMPILE_CACHE_ENV = "HAMECHO_COMPILE_CACHE"
HUGE_PAGES_ENV = "HAMECHO_HUGE_PAGES"
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
# Least recently used entries are dropped beyond this size (the full test suite writes about ~0.3 GiB).
CACHE_MAX_BYTES = 2 * 2**30
OFF = ("off", "0", "false", "no")


def _off(variable: str) -> bool:
    return os.environ.get(variable, "").strip().lower() in OFF


def compilation_cache_dir() -> Path | None:
    """The persistent compilation cache's folder as the environment says (module docstring), None when off."""
    value = os.environ.get(COMPILE_CACHE_ENV, "").strip()
    if value.lower() in OFF:
        return None
    if value:
        return Path(value).expanduser()
    if os.environ.get("HAMECHO_CACHE"):
        return Path(os.environ["HAMECHO_CACHE"]).expanduser() / "jax"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hamecho" / "jax"


def enable_compilation_cache(path=None) -> Path | None:
    """Turn on JAX's persistent compilation cache in ``path`` (default :func:`compilation_cache_dir`).

    Returns the folder, or None when the cache is turned off (``HAMECHO_COMPILE_CACHE=off``, and no
    ``path`` given). Call it before the first compilation of the process: JAX opens its cache once (a
    second call returns the folder already in use).
    Every compilation is cached, however short; the folder is bounded by ``CACHE_MAX_BYTES`` when
    ``filelock`` is installed (it also makes concurrent writers safe), else unbounded.
    """
    folder = Path(path).expanduser() if path is not None else compilation_cache_dir()
    if folder is None:
        return None
    import jax

    if jax.config.jax_compilation_cache_dir:  # enabled already (JAX opens its cache once): the first folder stays
        return Path(jax.config.jax_compilation_cache_dir)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import filelock  # noqa: F401  (JAX's bounded cache locks its folder with it)
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    except ImportError:
        pass
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)  # no lower bound on an entry's size
    return folder


def huge_pages_state() -> str:
    """"on" when this process's malloc uses transparent huge pages (``GLIBC_TUNABLES`` has
    ``glibc.malloc.hugetlb=1`` or ``=2``), else "off"; what every benchmark records."""
    tunables = os.environ.get("GLIBC_TUNABLES", "")
    return "on" if any(t.strip() in ("glibc.malloc.hugetlb=1", "glibc.malloc.hugetlb=2")
                       for t in tunables.split(":")) else "off"


def _glibc() -> bool:
    import platform

    return sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def with_huge_pages(env: dict) -> dict:
    """``env`` with glibc's malloc told to use huge pages (``GLIBC_TUNABLES`` appended to, not replaced),
    unless it already sets ``glibc.malloc.hugetlb`` or ``HAMECHO_HUGE_PAGES`` is off."""
    env = dict(env)
    tunables = env.get("GLIBC_TUNABLES", "")
    if env.get(HUGE_PAGES_ENV, "").strip().lower() in OFF or "glibc.malloc.hugetlb" in tunables:
        return env
    env["GLIBC_TUNABLES"] = f"{tunables}:{HUGE_PAGES_TUNABLE}" if tunables else HUGE_PAGES_TUNABLE
    return env


def reexec_with_huge_pages(argv: list[str], module: str = "hamecho.cli") -> None:
    """Replace this process by ``python -m module argv`` with huge pages for malloc (module docstring);
    returns (doing nothing) when they are on already, turned off, or the C library is not glibc.

    Only for the ``hamecho`` console command, before anything heavy is imported: nothing of this process
    survives but its arguments, environment and open standard streams.
    """
    if _off(HUGE_PAGES_ENV) or "glibc.malloc.hugetlb" in os.environ.get("GLIBC_TUNABLES", "") or not _glibc():
        return
    env = with_huge_pages(os.environ)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
    except OSError:
        return  # cannot re-execute (an unusual interpreter): run on without huge pages
