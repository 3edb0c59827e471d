"""Can the linear HRU hold a sum? The adding problem's best linear readout from oscillator positions.

Suppose block 1 forms the products p_t = marker_t · value_t exactly (its GLU can gate a value by a marker) and
block 2's oscillators integrate them. The position of an oscillator turning by θ per step, read after the last
step, is Σ_t K(L − t) p_t with K(lag) ∝ sin(θ·lag) (a free particle, θ → 0: K ∝ lag). The target is p summed
with weight 1 at every lag, so the readout Σ_j w_j K_j must be 1 at every lag a marker can have, [1, L]. This
script fits w by least squares over the lags (uniform, as the markers are) for a set of oscillators and reports
the MSE of the resulting estimate of the sum, against the task's baseline 1/6 (predicting the mean):

    python benchmarks/longrange/adding_kernel.py --lengths 1000 10000 100000 1000000
"""
from __future__ import annotations

import argparse

import numpy as np


def angles_paper(rng, count):
    """The paper's initialisation: a, s ~ U[0,1), δ = sigmoid(s), θ = 2 arcsin(δ√a / 2)."""
    a, s = rng.random(count), rng.random(count)
    delta = 1 / (1 + np.exp(-s))
    return 2 * np.arcsin(delta * np.sqrt(a) / 2)


def angles_periods(rng, count, shortest, longest):
    """Stratified log-uniform periods in [shortest, longest] (``hamecho.nn.layers.stiffness_for_periods``)."""
    low, high = np.log(2 * np.pi / longest), np.log(2 * np.pi / shortest)
    return np.exp(low + (high - low) * (np.arange(count) + rng.random(count)) / count)


def adding_mse(angles, length):
    """MSE of the best linear estimate of v1 + v2 from the oscillators' final positions (values U[0,1))."""
    lags = np.arange(1, length + 1, dtype=np.float64)
    kernels = np.sin(np.outer(lags, angles)) / np.maximum(np.sin(angles), 1e-300)
    kernels = np.concatenate([kernels, lags[:, None]], axis=1)           # and one free particle
    kernels /= np.linalg.norm(kernels, axis=0)
    w, *_ = np.linalg.lstsq(kernels, np.ones_like(lags), rcond=None)
    error = kernels @ w - 1.0                                            # readout gain − 1 at each lag
    # estimate − target = v1·e(lag1) + v2·e(lag2), lag1 in (L/2, L], lag2 in [1, L/2], v ~ U[0,1): E v² = 1/3
    half = length // 2
    return (np.mean(error[half:] ** 2) + np.mean(error[:half] ** 2)) / 3.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", nargs="+", type=int, default=[1000, 10000, 100000])
    p.add_argument("--oscillators", type=int, default=16)
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    print(f"baseline (predict the mean): {1 / 6:.4f}; {args.oscillators} oscillators and one free particle")
    for length in args.lengths:
        sets = {"paper init": angles_paper(rng, args.oscillators),
                "periods 2.5..L": angles_periods(rng, args.oscillators, 2.5, length),
                "periods L/8..4L": angles_periods(rng, args.oscillators, length / 8, 4 * length),
                "sine series (2k+1)π/L": (2 * np.arange(args.oscillators) + 1) * np.pi / length}
        cells = ", ".join(f"{name} {adding_mse(angles, length):.4f}" for name, angles in sets.items())
        print(f"L={length:>8}: {cells}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
