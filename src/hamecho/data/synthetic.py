"""Synthetic long-range tasks, generated deterministically from a seed (``numpy`` PCG64) and fast for any length.

Both are fully vectorised (no Python loop over samples or steps), so very long sequences stay cheap to make.
"""
from __future__ import annotations

import numpy as np

__all__ = ["make_first_segment", "make_ppg_like", "SYNTHETIC_TASKS"]


def make_first_segment(num_samples: int, length: int, seed: int, *, num_classes: int = 4, channels: int = 2,
                       prefix_fraction: float = 0.05, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Classification decided only by the first 5 % of the sequence ("synthetic/first5").

    **What it measures:** long-range memory. The class of a sequence is the frequency of the sinusoid played in its
    first ``ceil(prefix_fraction * length)`` steps (class ``k`` has period ``8 + 4k`` steps; random phase and
    amplitude in [0.7, 1.3], same frequency on every channel with a per-channel phase shift). The remaining 95 % is
    *distractor* input: Gaussian noise plus short bursts of sinusoids whose frequencies are drawn from the same class
    set at random, so the end of the sequence looks like evidence for random classes. A model that reads its
    prediction at the last step must carry the prefix information across the whole sequence and ignore the
    distractors; chance accuracy is ``1 / num_classes``.

    Returns ``x`` float32 ``(num_samples, length, channels)`` and ``y`` int64 ``(num_samples,)``.
    """
    if length < 20:
        raise ValueError(f"length must be at least 20 for the first-segment task, got {length}")
    rng = np.random.Generator(np.random.PCG64(seed))
    prefix = max(1, int(np.ceil(prefix_fraction * length)))
    y = rng.integers(0, num_classes, size=num_samples)
    periods = 8.0 + 4.0 * np.arange(num_classes)
    x = (noise * rng.standard_normal((num_samples, length, channels), dtype=np.float32))
    t = np.arange(prefix, dtype=np.float32)
    amp = rng.uniform(0.7, 1.3, size=(num_samples, 1, 1)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(num_samples, 1, 1)).astype(np.float32)
    shift = (np.pi / 2) * np.arange(channels, dtype=np.float32)[None, None, :]
    omega = (2 * np.pi / periods[y]).astype(np.float32)[:, None, None]
    x[:, :prefix] += amp * np.sin(omega * t[None, :, None] + phase + shift)
    # distractor bursts after the prefix: one burst of `prefix` steps per 10 % of the sequence, random class frequency
    rest = length - prefix
    bursts = max(1, rest // max(prefix * 2, 1))
    bursts = min(bursts, 16)
    starts = prefix + rng.integers(0, max(rest - prefix, 1), size=(num_samples, bursts))
    fake = rng.integers(0, num_classes, size=(num_samples, bursts))
    fake_phase = rng.uniform(0, 2 * np.pi, size=(num_samples, bursts)).astype(np.float32)
    rows = np.arange(num_samples)[:, None]
    for b in range(bursts):
        idx = starts[:, b:b + 1] + np.arange(prefix)[None, :]           # (N, prefix)
        idx = np.minimum(idx, length - 1)
        w = (2 * np.pi / periods[fake[:, b]]).astype(np.float32)[:, None, None]
        burst = np.sin(w * t[None, :, None] + fake_phase[:, b, None, None] + shift)
        x[rows, idx] += burst.astype(np.float32)
    return x, y.astype(np.int64)


def make_ppg_like(num_samples: int, length: int, seed: int, *, output_step: int = 128,
                  rate_range: tuple[float, float] = (1.0, 3.0), sample_rate: float = 64.0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """PPG-shaped regression ("synthetic/ppg"): 6 input channels, the hidden heart rate every ``output_step`` steps.

    **What it measures:** tracking a slowly varying latent frequency over long sequences, the structure of
    PPG-DaLiA (6 channels at 64 Hz, one heart-rate label per 128 steps) without the real data. A hidden rate
    ``f(t)`` (in Hz, within ``rate_range``, i.e. 60–180 beats per minute) drifts smoothly (a sum of three slow
    random sinusoids, periods of 20–200 s). The inputs are:

    * channel 0 ("BVP"): a pulse wave ``sin φ + 0.3 sin 2φ`` with ``φ = 2π ∫ f`` plus noise;
    * channels 1–3 ("ACC"): motion noise, partly correlated with the pulse (motion artefacts) so the rate is not
      readable from one channel alone;
    * channel 4 ("EDA") and channel 5 ("TEMP"): slow random drifts unrelated to the target (distractors).

    The target at output ``k`` is ``f`` at step ``(k + 1) * output_step - 1``, scaled from ``rate_range`` to
    [−1, 1]. Returns ``x`` float32 ``(num_samples, length, 6)`` and ``y`` float32
    ``(num_samples, length // output_step, 1)``.
    """
    if length < output_step:
        raise ValueError(f"length must be at least output_step={output_step}, got {length}")
    lo, hi = rate_range
    rng = np.random.Generator(np.random.PCG64(seed))
    n = num_samples
    periods = rng.uniform(20.0, 200.0, size=(n, 3, 1))
    phases = rng.uniform(0, 2 * np.pi, size=(n, 3, 1))
    weights = rng.dirichlet(np.ones(3), size=n)[:, :, None]
    center = rng.uniform(-0.3, 0.3, size=(n, 1))
    phase0 = rng.uniform(0, 2 * np.pi, size=(n, 1))
    coupling = rng.uniform(-1, 1, size=(n, 3))
    t = (np.arange(length, dtype=np.float64) / sample_rate)[None, None, :]      # seconds
    steps = np.arange(output_step - 1, (length // output_step) * output_step, output_step)
    x = np.empty((n, length, 6), dtype=np.float32)
    y = np.empty((n, steps.size, 1), dtype=np.float32)
    chunk = 16  # samples per block; each block has its own noise stream, so results do not depend on memory
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        noise = np.random.Generator(np.random.PCG64([seed, start // chunk]))
        m = sl.stop - sl.start
        drift = (weights[sl] * np.sin(2 * np.pi * t / periods[sl] + phases[sl])).sum(axis=1)   # in [-1, 1]
        unit = np.clip(center[sl] + 0.7 * drift, -1.0, 1.0)                      # target in [-1, 1]
        rate = lo + (unit + 1.0) * 0.5 * (hi - lo)                               # Hz
        phi = 2 * np.pi * np.cumsum(rate, axis=1) / sample_rate + phase0[sl]
        pulse = (np.sin(phi) + 0.3 * np.sin(2 * phi)).astype(np.float32)
        x[sl, :, 0] = pulse + 0.2 * noise.standard_normal((m, length), dtype=np.float32)
        for c in range(3):
            x[sl, :, 1 + c] = (0.5 * noise.standard_normal((m, length), dtype=np.float32)
                               + 0.2 * coupling[sl, c:c + 1].astype(np.float32) * pulse)
        walk = np.cumsum(noise.standard_normal((m, length, 2), dtype=np.float32), axis=1) / np.float32(np.sqrt(length))
        x[sl, :, 4:6] = walk
        y[sl, :, 0] = unit[:, steps]
    return x, y


SYNTHETIC_TASKS = {
    "first5": "classification decided by the first 5 % of the sequence; the rest is distractor noise",
    "ppg": "PPG-shaped regression: 6 channels, hidden slowly varying heart rate every 128 steps",
}
