"""Configuration files: every shipped config validates; bad ones fail before training with a clear message."""
import json
from pathlib import Path

import pytest

from hamecho import cli
from hamecho.training.config import ConfigError, config_from_dict, load_config, parse_override

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.toml"))

GOOD = """
[data]
name = "synthetic/first5"
length = 40

[model]
hru = "linear"
hidden = 8
state = 4
blocks = 1

[train]
lr = 1e-3
steps = 10
eval_every = 5
"""


def write(tmp_path, text, name="cfg.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# --- shipped configurations -----------------------------------------------------------------------------

def test_shipped_configs_exist():
    names = {str(p.relative_to(ROOT / "configs")) for p in CONFIGS}
    paper = ["EigenWorms", "EthanolConcentration", "Heartbeat", "MotorImagery", "SelfRegulationSCP1",
             "SelfRegulationSCP2", "ppg"]
    for model in ("linear", "nonlinear"):
        for dataset in paper + ["JapaneseVowels", "BasicMotions", "EthanolLevel", "fashion-mnist", "synthetic-first5",
                                "synthetic-ppg"]:
            assert f"{model}/{dataset}.toml" in names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_shipped_config_validates(path):
    config = load_config(path)
    assert config.name == str(path.relative_to(ROOT / "configs"))[:-len(".toml")]
    assert config.model.hru == path.parent.name


# The paper's hyper-parameters (rhel-paper-notes §6.3): lr, batch, blocks, hidden H, state P, time channel.
PAPER = {
    "EigenWorms": (1e-4, 4, 2, 64, 16, False, 64),
    "EthanolConcentration": (1e-5, 32, 4, 16, 256, False, 16),
    "Heartbeat": (1e-5, 32, 2, 64, 16, True, 64),
    "MotorImagery": (1e-5, 32, 2, 128, 16, False, 128),
    "SelfRegulationSCP1": (1e-4, 32, 6, 64, 256, True, 128),
    "SelfRegulationSCP2": (1e-5, 32, 6, 64, 256, True, 64),
    "ppg": (1e-4, 4, 6, 64, 16, True, 64),
}


@pytest.mark.parametrize("dataset", sorted(PAPER))
@pytest.mark.parametrize("model", ["linear", "nonlinear"])
def test_paper_hyperparameters(dataset, model):
    lr, batch, blocks, hidden, state, time_channel, nonlinear_hidden = PAPER[dataset]
    c = load_config(ROOT / "configs" / model / f"{dataset}.toml")
    assert c.train.lr == lr and c.train.batch_size == batch and c.model.blocks == blocks
    assert c.model.hidden == (hidden if model == "linear" else nonlinear_hidden)
    assert c.model.state == state and c.data.time_channel is time_channel
    assert c.train.steps == 100_000 and c.train.eval_every == 1_000 and c.train.patience == 10
    assert c.train.early_stopping and c.train.eps == 0.1
    assert c.train.seeds == (2345, 3456, 4567, 5678, 6789)
    if model == "nonlinear":
        assert c.model.step == 1e-4
    assert c.data.name == ("ppg" if dataset == "ppg" else f"uea/{dataset}")


# --- validation messages --------------------------------------------------------------------------------

def test_good_config_and_defaults(tmp_path):
    c = load_config(write(tmp_path, GOOD))
    assert c.name == "cfg" and c.out == "runs"
    assert c.train.algos == ("bptt", "rhel") and c.train.dtype == "float32" and c.train.batch_size == 32
    assert c.data.time_channel is False and c.data.length == 40


@pytest.mark.parametrize("edit, fragments", [
    (("[train]", "[train]\nlrr = 1"), ["unknown key 'lrr' in train", "allowed keys: lr, batch_size"]),
    (("[model]", "[modle]\nx = 1\n[model]"), ["unknown key or table 'modle'", "[data], [model], [train]"]),
    (("steps = 10", "steps = \"ten\""), ["train.steps must be an integer", "'ten'", "string"]),
    (("steps = 10", "steps = 10.0"), ["train.steps must be an integer", "10.0"]),
    (("lr = 1e-3", "lr = 0"), ["train.lr must be a finite number > 0", "got 0.0"]),
    (("lr = 1e-3", "lr = -1e-3"), ["train.lr must be a finite number > 0"]),
    (("lr = 1e-3", "lr = true"), ["train.lr must be a number", "boolean"]),
    (("lr = 1e-3\n", ""), ["missing required key train.lr"]),
    (('name = "synthetic/first5"\n', ""), ["missing required key data.name"]),
    (('name = "synthetic/first5"', 'name = "mnist"'), ["data.name must be a dataset name", "uea/<Name>"]),
    (('name = "synthetic/first5"', 'name = "synthetic/first9"'), ["synthetic task 'first9' is unknown",
                                                                  "synthetic/first5, synthetic/ppg"]),
    (('hru = "linear"', 'hru = "lstm"'), ["model.hru must be one of 'linear', 'nonlinear'", "'lstm'"]),
    (("[train]", "[train]\ndtype = \"float16\""), ["train.dtype must be one of 'float32', 'float64'"]),
    (("[train]", "[train]\nalgos = [\"rhel\", \"adjoint\"]"), ["train.algos has 'adjoint'", "'bptt', 'rhel'"]),
    (("[train]", "[train]\nseeds = [1, 1]"), ["train.seeds must not repeat"]),
    (("eval_every = 5", "eval_every = 50"), ["train.eval_every must be <= train.steps"]),
    (("[data]", "[data]\ntime_channel = 1"), ["data.time_channel must be true or false"]),
])
def test_bad_config_names_key_and_allowed_values(tmp_path, edit, fragments):
    text = GOOD.replace(*edit, 1)
    assert text != GOOD
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    message = str(info.value)
    assert str(tmp_path / "cfg.toml") in message
    for fragment in fragments:
        assert fragment in message, message


def test_missing_table(tmp_path):
    with pytest.raises(ConfigError, match=r"missing table \[train\]"):
        load_config(write(tmp_path, GOOD.split("[train]")[0]))


def test_not_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[data\nname = 1"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "absent.toml")


def test_overrides_merge_and_validate(tmp_path):
    path = write(tmp_path, GOOD)
    c = load_config(path, {"train.lr": 0.5, "train.algos": ["rhel"], "train.seeds": [7], "out": "elsewhere",
                           "data.data_dir": "/data"})
    assert c.train.lr == 0.5 and c.train.algos == ("rhel",) and c.train.seeds == (7,)
    assert c.out == "elsewhere" and c.data.data_dir == "/data"
    with pytest.raises(ConfigError, match="train.lr must be a finite number > 0"):
        load_config(path, {"train.lr": -1.0})
    with pytest.raises(ConfigError, match="unknown key 'stpes' in train"):
        load_config(path, {"train.stpes": 3})
    assert parse_override("train.batch_size=16") == ("train.batch_size", 16)
    assert parse_override("train.dtype=float64") == ("train.dtype", "float64")
    assert parse_override("train.algos=['rhel']") == ("train.algos", ["rhel"])
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("lr")


def test_fingerprint_ignores_seeds_and_paths_only(tmp_path):
    c = load_config(write(tmp_path, GOOD))
    assert c.replace(train={"seeds": [1]}).run_fingerprint() == c.run_fingerprint()
    assert c.replace(out="x", data={"data_dir": "/d"}).run_fingerprint() == c.run_fingerprint()
    assert c.replace(train={"lr": 0.1}).run_fingerprint() != c.run_fingerprint()
    assert c.replace(model={"hidden": 9}).run_fingerprint() != c.run_fingerprint()


def test_data_path_instead_of_a_dataset_name(tmp_path):
    """data.path (a data file of your own) or data.name, exactly one; the path counts in the fingerprint."""
    own = GOOD.replace('name = "synthetic/first5"', 'path = "sub/own.npz"')
    c = load_config(write(tmp_path, own))
    assert c.data.path == "sub/own.npz" and c.data.name is None and c.base_dir == str(tmp_path)
    assert c.to_dict()["data"]["path"] == "sub/own.npz" and "name" not in c.to_dict()["data"]
    assert c.replace(data={"path": "other.npz"}).run_fingerprint() != c.run_fingerprint()
    assert c.replace(train={"lr": 0.5}).base_dir == c.base_dir
    assert config_from_dict({"data": {"path": "/x/my data.csv"}, "model": {"hru": "linear"},
                             "train": {"lr": 1.0}}).name == "my data"
    for text, fragment in [(GOOD.replace("[data]", '[data]\npath = "own.npz"'), "not both"),
                           (own.replace("own.npz", "own.xlsx"), "data.path must be the path of a data file ending "
                                                                "in .npz, .csv"),
                           (GOOD.replace('name = "synthetic/first5"\n', ""), "or data.path")]:
        with pytest.raises(ConfigError, match=fragment):
            load_config(write(tmp_path, text))


def test_dict_config_default_name():
    c = config_from_dict({"data": {"name": "synthetic/first5"}, "model": {"hru": "nonlinear"},
                          "train": {"lr": 1.0, "steps": 2000}})
    assert c.name == "synthetic-first5" and c.model.step == 1e-4


# --- the command line fails before training -------------------------------------------------------------

def run_cli(argv):
    return cli.main(argv)


def test_cli_bad_config_exits_2_with_one_line(tmp_path, capsys):
    bad = write(tmp_path, GOOD.replace("lr = 1e-3", "lr = 0"))
    assert run_cli(["train", str(bad), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.lr must be a finite number > 0" in err[0]
    assert not (tmp_path / "runs").exists()


def test_cli_flag_override_is_validated(tmp_path, capsys):
    good = write(tmp_path, GOOD)
    assert run_cli(["train", str(good), "--lr", "-1", "--out", str(tmp_path / "runs")]) == 2
    assert "train.lr must be a finite number > 0" in capsys.readouterr().err
    assert run_cli(["train", str(good), "--algo", "rhel,adjoint", "--check"]) == 2
    assert "train.algos has 'adjoint'" in capsys.readouterr().err
    assert run_cli(["train", str(good), "--set", "train.batch_size=0", "--check"]) == 2
    assert "train.batch_size must be > 0" in capsys.readouterr().err


def test_cli_missing_data_fails_before_training(tmp_path, capsys):
    cfg = write(tmp_path, GOOD.replace('name = "synthetic/first5"', 'name = "uea/NoSuchDataset"'))
    code = run_cli(["train", str(cfg), "--out", str(tmp_path / "runs"), "--data-dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "NoSuchDataset" in err
    assert not (tmp_path / "runs").exists()


def test_cli_check_lists_configs(tmp_path, capsys):
    assert run_cli(["train", str(write(tmp_path, GOOD)), "--check", "--seeds", "1", "2"]) == 0
    assert "ok (cfg: synthetic/first5, linear HRU, algos bptt, rhel, seeds 1, 2)" in capsys.readouterr().out


def test_fixed_point_integrator_is_rhel_only():
    from hamecho.training.config import ConfigError, config_from_dict

    raw = {"data": {"name": "synthetic/first5"}, "model": {"hru": "nonlinear"},
           "train": {"lr": 1e-3, "integrator": "fixed_point", "fraction_bits": 40}}
    with pytest.raises(ConfigError, match="RHEL only"):
        config_from_dict(raw)
    config = config_from_dict({**raw, "train": {**raw["train"], "algos": ["rhel"]}})
    assert (config.train.integrator, config.train.fraction_bits) == ("fixed_point", 40)
    with pytest.raises(ConfigError, match="fraction_bits"):
        config_from_dict({**raw, "train": {**raw["train"], "algos": ["rhel"], "fraction_bits": 63}})


def test_block_chunk_reaches_the_choices_and_is_checked():
    from hamecho import TimeChunks
    from hamecho.training import choices_for

    raw = {"data": {"name": "synthetic/first5"}, "model": {"hru": "linear"}, "train": {"lr": 1e-3}}
    plain = config_from_dict(raw)
    chunked = config_from_dict({**raw, "train": {"lr": 1e-3, "block_chunk": 256}})
    assert (plain.train.block_chunk, chunked.train.block_chunk) == (0, 256)
    assert choices_for(plain, "rhel").memory is None and choices_for(chunked, "bptt").memory == TimeChunks(256)
    # in the fingerprint when on (dropout draws per chunk change the run); runs made before the option keep theirs
    assert chunked.run_fingerprint() != plain.run_fingerprint()
    with pytest.raises(ConfigError, match="train.block_chunk must be"):
        config_from_dict({**raw, "train": {"lr": 1e-3, "block_chunk": -1}})
    with pytest.raises(ConfigError, match=r"TimeChunks\(size=8\) \(blocks run over time chunks\) needs a sequential "
                                          "scan in floating point"):
        config_from_dict({**raw, "train": {"lr": 1e-3, "block_chunk": 8, "integrator": "fixed_point",
                                           "algos": ["rhel"]}})


def test_run_fingerprints_are_those_recorded_before_the_redesign():
    """Every config (and one variant per [train] key) hashes as before #13, so finished runs stay valid.

    tests/golden/fingerprints.json was written by the pre-redesign code (commit 22ebd82)."""
    recorded = json.loads((ROOT / "tests" / "golden" / "fingerprints.json").read_text())
    assert len(recorded) == len(CONFIGS) + 11
    for entry, fingerprint in recorded.items():
        path, *overrides = entry.split(" ")
        config = load_config(ROOT / path, dict(parse_override(text) for text in overrides))
        assert config.run_fingerprint() == fingerprint, entry


# --- model.norm and train.memory = "streaming" (issue #14) ----------------------------------------------

STREAMING = {"data": {"name": "synthetic/first5"}, "model": {"hru": "linear", "norm": "layer"},
             "train": {"lr": 1e-3, "algos": ["rhel"], "memory": "streaming", "stream_chunk": 64}}


def test_norm_and_streaming_reach_the_model_and_the_choices():
    from hamecho import Streaming
    from hamecho.training import choices_for

    config = config_from_dict(STREAMING)
    assert (config.model.norm, config.train.memory, config.train.stream_chunk) == ("layer", "streaming", 64)
    assert choices_for(config, "rhel").memory == Streaming(64)
    plain = config_from_dict({**STREAMING, "model": {"hru": "linear"}, "train": {"lr": 1e-3}})
    assert (plain.model.norm, plain.train.memory, plain.train.stream_chunk) == ("batch", "none", 512)
    assert choices_for(plain, "rhel").memory is None


def test_norm_and_streaming_change_the_fingerprint_only_when_not_at_their_defaults():
    base = {"data": {"name": "synthetic/first5"}, "model": {"hru": "linear"}, "train": {"lr": 1e-3}}
    plain = config_from_dict(base).run_fingerprint()
    same = [config_from_dict({**base, "model": {"hru": "linear", "norm": "batch"}}),
            config_from_dict({**base, "train": {"lr": 1e-3, "memory": "none", "stream_chunk": 64}})]
    assert all(c.run_fingerprint() == plain for c in same)   # the golden fingerprints: the keys absent
    layer = config_from_dict({**base, "model": {"hru": "linear", "norm": "layer"}})
    streamed = config_from_dict(STREAMING)
    other_chunk = config_from_dict({**STREAMING, "train": {**STREAMING["train"], "stream_chunk": 128}})
    assert len({plain, layer.run_fingerprint(), streamed.run_fingerprint(), other_chunk.run_fingerprint()}) == 4


@pytest.mark.parametrize("change, fragment", [
    ({"train": {"algos": ["bptt", "rhel"]}}, r"\[train\] and model.norm with train.algos containing 'bptt': "
                                             r"Streaming\(chunk=64\) works with RHEL only"),
    ({"model": {"norm": "batch"}}, r"\[train\] and model.norm with train.algos containing 'rhel': Streaming"
                                   r"\(chunk=64\) needs HSSM\(norm='layer'\); got norm='batch'"),
    ({"model": {}}, r"needs HSSM\(norm='layer'\); got norm='batch'"),            # batch is the default
    ({"train": {"block_chunk": 256}}, "block_chunk and stream_chunk are memory strategies"),
    ({"train": {"recompute_blocks": True}}, "recompute_blocks and stream_chunk are memory strategies"),
    ({"train": {"integrator": "fixed_point", "memory": "none"}, "model": {"norm": "batch"}}, None),
    ({"train": {"stream_chunk": 0}}, "train.stream_chunk is refused: chunk must be a positive integer .*; got 0"),
    ({"train": {"memory": "chunks"}}, "train.memory must be one of 'none', 'streaming'; got 'chunks'"),
    ({"model": {"norm": "group"}}, "model.norm must be one of 'batch', 'layer'; got 'group'"),
])
def test_illegal_streaming_combinations_are_refused_on_load(tmp_path, change, fragment):
    raw = {section: {**table, **change.get(section, {})} for section, table in STREAMING.items()}
    if change.get("model") == {}:
        raw["model"].pop("norm")
    if fragment is None:
        config_from_dict(raw)   # fixed point RHEL without streaming, norm batch: legal
        return
    with pytest.raises(ConfigError, match=fragment):
        config_from_dict(raw, source="cfg.toml")
    path = write(tmp_path, "\n".join(f"[{s}]\n" + "\n".join(f"{k} = {_toml(v)}" for k, v in t.items())
                                     for s, t in raw.items()))
    with pytest.raises(ConfigError, match=f"^{path}: "):   # the file named, as for every other error
        load_config(path)


def _toml(value):
    return json.dumps(value).lower() if isinstance(value, bool) else json.dumps(value)


@pytest.mark.usefixtures("isolated")
def test_hamecho_train_with_streaming_end_to_end(tmp_path, capsys):
    """`hamecho train` with model.norm = "layer", train.memory = "streaming": it trains, records the keys, and
    its losses are those of the same run without streaming (RHEL's gradients either way, up to rounding)."""
    from hamecho.training import read_result

    text = ('[data]\nname = "synthetic/first5"\nlength = 40\nnum_samples = 32\n'
            '[model]\nhru = "linear"\nhidden = 8\nstate = 4\nblocks = 2\nnorm = "layer"\n'
            '[train]\nlr = 1e-2\nbatch_size = 8\nsteps = 4\neval_every = 2\nearly_stopping = false\n'
            'dtype = "float64"\nalgos = ["rhel"]\nseeds = [3]\nmemory = "streaming"\nstream_chunk = 16\n')
    streamed, plain = write(tmp_path, text, "streamed.toml"), write(tmp_path, text.replace(
        'memory = "streaming"', 'memory = "none"'), "plain.toml")
    results = {}
    for path in (streamed, plain):
        assert run_cli(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
        results[path.stem] = read_result(tmp_path / "runs" / path.stem / "rhel" / "seed3.json")
    s, p = results["streamed"], results["plain"]
    assert s["steps"] == 4 and s["config"]["train"]["memory"] == "streaming" and s["config"]["model"]["norm"] == "layer"
    assert s["fingerprint"] != p["fingerprint"]
    assert [h["train_loss"] for h in s["history"]] == pytest.approx([h["train_loss"] for h in p["history"]], rel=1e-9)
    assert s["history"][0]["train_loss"] != s["history"][-1]["train_loss"]   # it trained
