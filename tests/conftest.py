"""Shared fixtures. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``.

The suite uses JAX's persistent compilation cache, as the CLI does (``hamecho.runtime``): the per-user
folder, or ``HAMECHO_COMPILE_CACHE`` (``off`` compiles everything afresh, as a fresh machine does).
Processes the tests start use the same folder.
"""
import os

import jax
import pytest

from hamecho import runtime

_cache = runtime.enable_compilation_cache()
os.environ[runtime.COMPILE_CACHE_ENV] = str(_cache) if _cache is not None else "off"


@pytest.fixture(scope="module")
def x64():
    """JAX's x64 mode for the whole module, restored afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", old)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """Split files in a temporary cache; restore JAX's x64 flag afterwards (training may switch it on)."""
    monkeypatch.setenv("HAMECHO_CACHE", str(tmp_path / "cache"))
    old = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", old)
