"""Shared fixtures. Modules opt in with ``pytestmark = pytest.mark.usefixtures(...)``."""
import jax
import pytest


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
