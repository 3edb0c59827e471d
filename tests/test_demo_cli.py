"""`hamecho demo oscillators --json` runs end to end on a tiny problem and writes its figures."""
import argparse
import json

import jax
import pytest

from hamecho.cli import demo


@pytest.fixture(autouse=True)
def restore_x64():
    old = jax.config.jax_enable_x64
    yield
    jax.config.update("jax_enable_x64", old)


def test_demo_oscillators_json(tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="hamecho")
    demo.add_command(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["demo", "oscillators", "--out", str(tmp_path), "--json",
                              "--steps", "3", "--n-steps", "200", "--T", "4",
                              "--eps", "1e-2", "1e-4", "--no-animation"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["eps"] == 1e-4
    assert report["rel_err_rhel_vs_adjoint"] <= 1e-6
    assert report["rel_err_adjoint_vs_autodiff"] <= 1e-6
    for name in ("trajectories.png", "accumulator.png", "gradients.png", "learning_curve.png"):
        assert (tmp_path / name).stat().st_size > 0
