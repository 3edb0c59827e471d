"""Generated datasets at any length: every sample made on demand from (seed, split, index), nothing held.

    source = generated("first5", length=1_000_000, sizes=(4096, 512, 512), seed=0)
    x, y = source.batch("train", [0, 1, 2, 3])     # x float32 (4, 1_000_000, 2), y int64 (4,)
    len(source.split("test"))                      # 512

A :class:`GeneratedSplits` is the *source protocol*: what a loaded ``DatasetSplits`` gives a training loop
(``name``, ``task``, ``length``, ``channels``, ``num_classes``, ``out_dim``, ``output_step``, ``class_names``,
``source``, ``summary()``), with ``batch(split, indices) -> (x, y)`` and ``size(split)`` in place of the
arrays ``x_train``, ``y_train``, …. A dataset at L = 10⁶ costs nothing until a batch is drawn; the same
sample is the same every time (its numbers depend on the seed, the split, its index, the length and the
task's parameters, never on which batch asks for it); the three splits are disjoint index spaces, each
sample's random stream being ``numpy.random.PCG64(SeedSequence([seed, split code, index]))`` with split codes
train 0, validation 1, test 2, so growing one split changes no sample of another. ``materialise()`` turns a
small source into a ``DatasetSplits`` for code that wants arrays.

The tasks (each a :class:`GeneratedTask`: ``sample(rng, length) -> (x (L, C), y)``) are listed in
``GENERATED_TASKS``; each docstring says where the task comes from and what it measures.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import ClassVar

import numpy as np

from .archives import ARCHIVES, load_archive
from .processing import DatasetSplits

__all__ = ["GENERATED_TASKS", "SPLITS", "Adding", "First5", "GeneratedSplits", "GeneratedTask", "NoisePadded",
           "PPGLike", "generated"]

SPLITS = ("train", "val", "test")
SPLIT_CODES = {"train": 0, "val": 1, "test": 2}


class GeneratedTask(ABC):
    """One kind of generated sequence. Subclasses are frozen dataclasses whose fields are the task's parameters."""

    name: ClassVar[str]
    task: ClassVar[str]                 # "classification" or "regression"
    min_length: ClassVar[int] = 1

    @property
    @abstractmethod
    def channels(self) -> int:
        """Input channels per step."""

    @property
    def num_classes(self) -> int | None:
        """Number of classes (classification), None for regression."""
        return None

    @property
    def out_dim(self) -> int:
        """Model outputs: the classes, or the targets per kept step."""
        return self.num_classes if self.task == "classification" else 1

    def output_step(self, length: int) -> int:
        """Regression: a target every ``output_step`` steps (``length`` for one target at the end)."""
        return 1

    def check_length(self, length: int) -> None:
        if not isinstance(length, (int, np.integer)) or isinstance(length, bool) or length < self.min_length:
            raise ValueError(f"length must be an integer ≥ {self.min_length} for the {self.name!r} task; "
                             f"got {length!r}")

    @abstractmethod
    def sample(self, rng: np.random.Generator, length: int, split: str, index: int
               ) -> tuple[np.ndarray, np.ndarray | int]:
        """One sequence: x float32 (length, channels) and its label (int) or targets (length // k, out_dim).

        ``rng`` is the sample's own stream; ``split`` and ``index`` matter only to a task built on a finite
        dataset (``NoisePadded``: which series).
        """


@dataclass(frozen=True)
class First5(GeneratedTask):
    """The class is the frequency of a sinusoid played in the first ``prefix_fraction`` of the sequence.

    The distribution of ``hamecho.data.synthetic.make_first_segment`` ("synthetic/first5"), drawn sample by
    sample: class ``k`` has period ``8 + 4k`` steps; the prefix (``ceil(prefix_fraction · L)`` steps) holds
    ``a·sin(ωt + φ + cπ/2)`` on channel c (a ~ U[0.7, 1.3], φ ~ U[0, 2π)); every step has noise N(0, noise²);
    after the prefix, ``min(16, (L − prefix) // (2·prefix))`` distractor bursts of ``prefix`` steps each, at
    uniform random starts, play a sinusoid of amplitude 1 at a random class's frequency. The eager generator
    draws the whole dataset from one stream, so its numbers differ; the distribution is the same.
    """

    name: ClassVar[str] = "first5"
    task: ClassVar[str] = "classification"
    min_length: ClassVar[int] = 20
    classes: int = 4
    input_channels: int = 2
    prefix_fraction: float = 0.05
    noise: float = 0.3

    @property
    def channels(self) -> int:
        return self.input_channels

    @property
    def num_classes(self) -> int:
        return self.classes

    def periods(self) -> np.ndarray:
        """The class periods in steps, (classes,)."""
        return 8.0 + 4.0 * np.arange(self.classes)

    def prefix(self, length: int) -> int:
        return max(1, math.ceil(self.prefix_fraction * length))

    def sample(self, rng, length, split="train", index=0):
        prefix = self.prefix(length)
        label = int(rng.integers(0, self.classes))
        x = self.noise * rng.standard_normal((length, self.channels), dtype=np.float32)
        shift = (np.pi / 2) * np.arange(self.channels)
        omega = 2 * np.pi / self.periods()
        t = np.arange(prefix, dtype=np.float64)[:, None]
        amplitude, phase = rng.uniform(0.7, 1.3), rng.uniform(0, 2 * np.pi)
        x[:prefix] += (amplitude * np.sin(omega[label] * t + phase + shift)).astype(np.float32)
        rest = length - prefix
        bursts = min(16, max(1, rest // (2 * prefix)))
        starts = prefix + rng.integers(0, max(rest - prefix, 1), size=bursts)
        fake = rng.integers(0, self.classes, size=bursts)
        fake_phase = rng.uniform(0, 2 * np.pi, size=bursts)
        for start, k, p in zip(starts, fake, fake_phase):
            n = min(prefix, length - start)
            x[start:start + n] += np.sin(omega[k] * t[:n] + p + shift).astype(np.float32)
        return x, label


@dataclass(frozen=True)
class Adding(GeneratedTask):
    """The adding problem (Hochreiter & Schmidhuber 1997, *Long short-term memory*, experiment 4; in the form of
    Le, Jaitly & Hinton 2015 and Arjovsky, Shah & Bengio 2016): add the two marked numbers of a long sequence.

    Channel 0 holds numbers drawn from U[0, 1); channel 1 is 0 except at two steps, one uniform in the first half
    and one in the second half, where it is 1. The target, read after the last step (``output_step = L``, y of
    shape (1, 1)), is the sum of the two marked numbers minus 1, in [−1, 1) (the HSSM's regression head ends
    in tanh). Predicting 0 always gives MSE 1/6 ≈ 0.167, the published baseline of this task.
    """

    name: ClassVar[str] = "adding"
    task: ClassVar[str] = "regression"
    min_length: ClassVar[int] = 2

    @property
    def channels(self) -> int:
        return 2

    def output_step(self, length: int) -> int:
        return length

    def sample(self, rng, length, split="train", index=0):
        x = np.zeros((length, 2), dtype=np.float32)
        x[:, 0] = rng.random(length, dtype=np.float32)
        half = length // 2
        marked = (int(rng.integers(0, half)), int(rng.integers(half, length)))
        x[marked, 1] = 1.0
        return x, np.array([[x[marked[0], 0] + x[marked[1], 0] - 1.0]], dtype=np.float32)


@dataclass(frozen=True)
class PPGLike(GeneratedTask):
    """PPG-shaped regression, the shape of the paper's Table 2 (PPG-DaLiA: 6 channels, L = 49,920, a heart-rate
    target every 128 steps), drawn sample by sample.

    The distribution of ``hamecho.data.synthetic.make_ppg_like`` ("synthetic/ppg", see there): a hidden rate
    in ``rate_range`` Hz drifting as a sum of three slow sinusoids; channel 0 a noisy pulse wave at that rate,
    channels 1–3 motion noise partly coupled to the pulse, channels 4–5 slow random walks unrelated to the
    target. y (L // 128, 1): the rate scaled to [−1, 1] at every 128th step. The eager generator draws blocks
    of 16 samples from shared streams, so its numbers differ.
    """

    name: ClassVar[str] = "ppg"
    task: ClassVar[str] = "regression"
    output_every: int = 128
    rate_range: tuple[float, float] = (1.0, 3.0)
    sample_rate: float = 64.0

    @property
    def min_length(self) -> int:
        return self.output_every

    @property
    def channels(self) -> int:
        return 6

    def output_step(self, length: int) -> int:
        return self.output_every

    def sample(self, rng, length, split="train", index=0):
        lo, hi = self.rate_range
        periods, phases = rng.uniform(20.0, 200.0, size=(3, 1)), rng.uniform(0, 2 * np.pi, size=(3, 1))
        weights = rng.dirichlet(np.ones(3))[:, None]
        center, phase0 = rng.uniform(-0.3, 0.3), rng.uniform(0, 2 * np.pi)
        coupling = rng.uniform(-1, 1, size=3).astype(np.float32)
        t = np.arange(length, dtype=np.float64) / self.sample_rate
        unit = np.clip(center + 0.7 * (weights * np.sin(2 * np.pi * t / periods + phases)).sum(axis=0), -1.0, 1.0)
        rate = lo + (unit + 1.0) * 0.5 * (hi - lo)
        phi = 2 * np.pi * np.cumsum(rate) / self.sample_rate + phase0
        pulse = (np.sin(phi) + 0.3 * np.sin(2 * phi)).astype(np.float32)
        x = np.empty((length, 6), dtype=np.float32)
        x[:, 0] = pulse + 0.2 * rng.standard_normal(length, dtype=np.float32)
        x[:, 1:4] = 0.5 * rng.standard_normal((length, 3), dtype=np.float32) + 0.2 * coupling * pulse[:, None]
        x[:, 4:6] = np.cumsum(rng.standard_normal((length, 2), dtype=np.float32), axis=0) / np.float32(np.sqrt(length))
        steps = np.arange(self.output_every - 1, (length // self.output_every) * self.output_every, self.output_every)
        return x, unit[steps, None].astype(np.float32)


@dataclass(frozen=True)
class NoisePadded(GeneratedTask):
    """A real dataset's series first, then noise to length L: the noise-padded protocol of Chang, Chen, Haber &
    Chi 2019 (*AntisymmetricRNN*, noise-padded CIFAR-10: 32 image rows, then Gaussian noise to 1,000 steps) on an
    archive dataset (default UCR ECG5000: 5 classes, 140 steps, 5,000 heartbeats).

    The series of ``dataset`` (an archive name, loaded once as ``hamecho.data.load`` loads it: the archive
    protocol and its stored 70/15/15 split under ``dataset_seed``) fill the first steps; noise N(0, noise²)
    fills the rest of every channel. Sample ``index`` of a split is that split's series ``index mod n``, in a
    fixed shuffled order (``orders``), with its own noise, so a split larger than the dataset's repeats series
    under new noise; the dataset's own split keeps the series of train, validation and test apart.
    """

    name: ClassVar[str] = "noise_padded"
    task: ClassVar[str] = "classification"
    dataset: str = "ucr/ECG5000"
    noise: float = 0.1
    dataset_seed: int = 2345

    @cached_property
    def data(self) -> DatasetSplits:
        kind, _, name = self.dataset.partition("/")
        if kind.lower() not in ARCHIVES or not name:
            raise ValueError(f"the noise-padded task takes an archive dataset, uea/<Name> or ucr/<Name>; "
                             f"got {self.dataset!r}")
        data = load_archive(kind.lower(), name, self.dataset, root=None, seed=self.dataset_seed, time_channel=False,
                            length=None, num_samples=None, split_dir=None, download=None)
        if data.task != "classification":
            raise ValueError(f"{self.dataset} is a {data.task} dataset; the noise-padded task needs class labels")
        return data

    @property
    def min_length(self) -> int:
        return self.data.length

    @property
    def channels(self) -> int:
        return self.data.channels

    @property
    def num_classes(self) -> int:
        return int(self.data.num_classes)

    def series(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """The dataset's series and labels of ``split`` in the order the archive stores them."""
        data = self.data
        return {"train": (data.x_train, data.y_train), "val": (data.x_val, data.y_val),
                "test": (data.x_test, data.y_test)}[split]

    @cached_property
    def orders(self) -> dict[str, np.ndarray]:
        """Per split, a fixed permutation of its series (from ``dataset_seed``): sample ``index`` is series
        ``order[index mod n]``. Archives store their splits grouped by class (ECG5000's test split: 445 of class
        0 first), so the first samples of a split must not be its first series, or a test of 300 samples is
        91 % one class and a training run sees the classes one after another."""
        return {split: np.random.default_rng([self.dataset_seed, _split_code(split)]).permutation(
                    len(self.series(split)[1])) for split in ("train", "val", "test")}

    def sample(self, rng, length, split="train", index=0):
        xs, ys = self.series(split)
        row = int(self.orders[split][index % len(xs)])
        x = self.noise * rng.standard_normal((length, self.channels), dtype=np.float32)
        x[:xs.shape[1]] = xs[row]
        return x, int(ys[row])


GENERATED_TASKS: dict[str, type[GeneratedTask]] = {
    cls.name: cls for cls in (First5, Adding, NoisePadded, PPGLike)}


@dataclass(frozen=True)
class GeneratedSplits:
    """Train / validation / test of a generated task at one length, made batch by batch (module docstring).

    generator: the task; length: steps per sequence; sizes: samples in (train, val, test); seed: the dataset's
    seed (the model's and the loop's seeds are separate).
    """

    generator: GeneratedTask
    length: int
    sizes: tuple[int, int, int]
    seed: int = 0
    name: str = field(default="")

    def __post_init__(self):
        self.generator.check_length(self.length)
        if len(self.sizes) != 3 or any(not isinstance(n, (int, np.integer)) or n < 0 for n in self.sizes):
            raise ValueError(f"sizes must be three non-negative integers (train, val, test); got {self.sizes!r}")
        if not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if not self.name:
            object.__setattr__(self, "name", f"generated/{self.generator.name}")

    # --- what a DatasetSplits also says -------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.generator.task

    @property
    def channels(self) -> int:
        return self.generator.channels

    @property
    def num_classes(self) -> int | None:
        return self.generator.num_classes

    @property
    def out_dim(self) -> int:
        return self.generator.out_dim

    @property
    def output_step(self) -> int:
        return self.generator.output_step(self.length)

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return None if self.num_classes is None else tuple(str(k) for k in range(self.num_classes))

    @property
    def source(self) -> str:
        return f"generated on demand ({self.generator!r}, numpy PCG64(SeedSequence([{self.seed}, split, index])))"

    def summary(self) -> dict:
        info = {"name": self.name, "task": self.task, "source": self.source,
                "cases": dict(zip(SPLITS, map(int, self.sizes))), "length": int(self.length),
                "channels": self.channels, "out_dim": self.out_dim, "output_step": self.output_step}
        if self.task == "classification":
            info["num_classes"] = self.num_classes
            info["class_names"] = list(self.class_names)
        return info

    # --- drawing samples ----------------------------------------------------------------------------
    def size(self, split: str) -> int:
        return int(self.sizes[_split_code(split)])

    def rng(self, split: str, index: int) -> np.random.Generator:
        """The random stream of sample ``index`` of ``split``."""
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, _split_code(split), int(index)])))

    def batch(self, split: str, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The samples ``indices`` of ``split``: x float32 (n, L, C) and y (int64 (n,) or float32 targets)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        n = self.size(split)
        if indices.size and (indices.min() < 0 or indices.max() >= n):
            raise ValueError(f"indices must lie in [0, {n}) for split {split!r}; "
                             f"got [{indices.min()}, {indices.max()}]")
        x = np.empty((indices.size, self.length, self.channels), dtype=np.float32)
        ys = []
        for row, index in enumerate(indices):
            x[row], y = self.generator.sample(self.rng(split, index), self.length, split, int(index))
            ys.append(y)
        if self.task == "classification":
            return x, np.asarray(ys, dtype=np.int64)
        shape = (0, self.length // self.output_step, self.out_dim)
        return x, (np.stack(ys).astype(np.float32) if ys else np.zeros(shape, np.float32))

    def materialise(self) -> DatasetSplits:
        """Every split as arrays (a ``DatasetSplits``): for short sequences and code that wants arrays."""
        arrays = {split: self.batch(split, np.arange(self.size(split))) for split in SPLITS}
        return DatasetSplits(
            name=self.name, task=self.task,
            x_train=arrays["train"][0], y_train=arrays["train"][1], x_val=arrays["val"][0], y_val=arrays["val"][1],
            x_test=arrays["test"][0], y_test=arrays["test"][1], num_classes=self.num_classes, out_dim=self.out_dim,
            output_step=self.output_step, class_names=self.class_names, source=self.source)


def _split_code(split: str) -> int:
    if split not in SPLIT_CODES:
        raise ValueError(f"split must be one of {', '.join(map(repr, SPLITS))}; got {split!r}")
    return SPLIT_CODES[split]


def generated(task: str, *, length: int, sizes: tuple[int, int, int], seed: int = 0, **parameters) -> GeneratedSplits:
    """The generated dataset ``task`` (a name in ``GENERATED_TASKS``) at ``length``; ``parameters`` go to the task."""
    if task not in GENERATED_TASKS:
        raise ValueError(f"unknown generated task {task!r}; allowed: {', '.join(GENERATED_TASKS)}")
    return GeneratedSplits(GENERATED_TASKS[task](**parameters), int(length), tuple(int(n) for n in sizes), int(seed))
