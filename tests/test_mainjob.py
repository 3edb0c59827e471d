"""`hamecho run` (make run) end to end on tiny configs, and its fairness checks on the shipped ones."""
import jax
import pytest

from hamecho.tools.mainjob import DEFAULT_CONFIGS, check_fair, resolve_config_path, run_main
from hamecho.training.config import load_config

TINY = """
[data]
name = "synthetic/first5"
length = 24
num_samples = 64

[model]
hru = "{hru}"
hidden = 4
state = 2
blocks = 1
step = 0.1

[train]
lr = 1e-2
batch_size = 8
steps = 4
eval_every = 2
early_stopping = false
seeds = [1]
dtype = "float64"
"""


pytestmark = pytest.mark.usefixtures("isolated")  # tests/conftest.py


def test_shipped_main_job_configs_are_fair():
    configs = [load_config(resolve_config_path(p)) for p in DEFAULT_CONFIGS]
    check_fair(configs)
    assert [c.model.hru for c in configs] == ["linear", "nonlinear"]
    assert configs[0].data.name == "uea/JapaneseVowels"
    for c in configs:
        assert not c.train.early_stopping           # same number of steps for both algorithms
        assert set(c.train.algos) == {"bptt", "rhel"}


def test_unfair_configs_are_rejected(tmp_path):
    a = tmp_path / "configs" / "linear" / "t.toml"
    b = tmp_path / "configs" / "nonlinear" / "t.toml"
    a.parent.mkdir(parents=True)
    b.parent.mkdir(parents=True)
    a.write_text(TINY.format(hru="linear"))
    b.write_text(TINY.format(hru="nonlinear").replace("steps = 4", "steps = 6"))
    with pytest.raises(ValueError, match="share the dataset, seeds and steps"):
        check_fair([load_config(a), load_config(b)])
    with pytest.raises(ValueError, match="compares both algorithms"):
        check_fair([load_config(a, {"train.algos": ["rhel"]})])


def test_main_job_end_to_end_tiny(tmp_path):
    paths = []
    for hru in ("linear", "nonlinear"):
        path = tmp_path / "configs" / hru / "tiny.toml"
        path.parent.mkdir(parents=True)
        path.write_text(TINY.format(hru=hru))
        paths.append(str(path))
    lines = []
    out = tmp_path / "main"
    summary = run_main(paths, out=str(out), echo=lines.append)
    text = "\n".join(lines)
    assert "| Model | Alg. | synthetic/first5 |" in text
    for model in ("Lin", "Nonlin"):
        for algo in ("BPTT", "RHEL"):
            assert f"| {model} | {algo} |" in text
    assert "Gradient alignment: RHEL (float64, eps = 0.1) vs BPTT (float64), linear HSSM" in text
    assert "Gradient alignment: RHEL (float64, eps = 0.1) vs BPTT (float64), nonlinear HSSM" in text
    for name in ("report.md", "summary.csv", "learning_curves.png", "rhel_vs_bptt.png", "gradcheck_linear.json",
                 "gradcheck_nonlinear.json"):
        assert (out / name).stat().st_size > 0
    # the linear HRU's echo gradient equals BPTT to rounding; the nonlinear one to O(eps^2)
    assert min(r["cosine"] for r in summary["gradcheck"]["linear"]["params"]) > 1 - 1e-12
    assert min(r["cosine"] for r in summary["gradcheck"]["nonlinear"]["params"]) > 1 - 1e-6
    # a second call reuses the finished runs
    again = run_main(paths, out=str(out), gradcheck=False, echo=lambda line: None)
    assert again["elapsed_s"] < summary["elapsed_s"]


@pytest.mark.parametrize("step, low, high", [(1e-4, 0.0, 1e-5), (0.1, 0.05, 1.0)])
def test_nonlinear_core_share_at_initial_step(step, low, high):
    """Why the main job's nonlinear HSSM starts at step 0.1: at the paper's 1e-4 and L = 29 the core's part of
    the HRU output (C·φ) is ~1e-7 of the D·u skip, so the Hamiltonian core barely takes part."""
    from hamecho import BPTT
    from hamecho.nn.layers import NonlinearHRU

    jax.config.update("jax_enable_x64", True)
    hru = NonlinearHRU(64, 16, step=step, dtype="float64", key=jax.random.PRNGKey(2345))
    u = jax.random.normal(jax.random.PRNGKey(0), (29, 16, 64), "float64")   # (L, N, H): the block's normalised input

    @jax.jit
    def share_of_core(hru, u):
        skip = hru.D * u
        return jax.numpy.linalg.norm(hru(u, gradient=BPTT()) - skip) / jax.numpy.linalg.norm(skip)

    share = float(share_of_core(hru, u))
    assert low < share < high


def test_memory_part_prints_the_three_methods_side_by_side(tmp_path):
    """make run's memory part, tiny (L = 48, one small block): one row per method, each measured in its own
    process (its own peak), the table printed and memory.json written."""
    import json

    from hamecho.tools.mainjob import memory_part

    lines = []
    shape = {"blocks": 1, "hidden": 8, "state": 4}
    rows = memory_part(48, tmp_path, lines.append, shape=shape)
    text = "\n".join(lines)
    assert [r["method"] for r in rows] == ["bptt", "bptt_chunked", "rhel_streaming"]
    for row in rows:
        assert "skipped" not in row, row
        assert row["length"] == 48 and row["shape"] == shape and row["process_peak_bytes"] > 2**20
    assert "== Memory: one training step at L = 48 (1 blocks, hidden 8, state 4, batch 4" in text
    assert "| BPTT (all activations) | " in text and "| BPTT, TimeChunks(1024) | " in text
    assert "| RHEL, Streaming(512) | " in text and "| method | peak RSS of the process (GiB) | × BPTT" in text
    assert json.loads((tmp_path / "memory.json").read_text()) == rows
    # three processes: the peaks differ (a shared process would report one running maximum, ever growing)
    assert len({r["process_peak_bytes"] for r in rows}) == 3


def test_run_command_has_the_memory_part_on_by_default():
    from hamecho.cli import build_parser
    from hamecho.tools.mainjob import MEMORY_LENGTH

    assert build_parser().parse_args(["run"]).memory_length == MEMORY_LENGTH == 30_000
    assert build_parser().parse_args(["run", "--memory-length", "0"]).memory_length == 0
    with pytest.raises(SystemExit):
        build_parser().parse_args(["run", "--memory-length", "-1"])
