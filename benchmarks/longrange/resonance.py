"""How much a single undamped oscillator of the linear HRU can tell about the first-5 % class, against its detuning.

The linear HRU's leapfrog is, mode by mode, a rotation by θ per step (cos θ = 1 − δ²A/2) driven by the input:
the complex amplitude after t steps is proportional to S_t = Σ_{s≤t} e^{−iθs} u_s, and the position oscillates with
envelope |S_t|. A readout that rectifies (GELU) and mean-pools over time sees about mean_t |S_t|; the state at the
end is |S_L|. For samples of synthetic first-5 % (channel 0, raw input) this script computes, for oscillators
detuned by Δ from the class-1 frequency (period 12 steps), the AUC of "class 1 against the rest" of these two
features, at several L. If the useful band shrinks as 1/prefix, a random initial frequency sees almost nothing at
large L, and a gradient on θ from outside the band has nothing to follow.

    python benchmarks/longrange/resonance.py --lengths 1000 10000 100000 1000000 --samples 60 \
        --out runs/longrange/resonance.json
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from hamecho.data.generated import First5


def features(u: np.ndarray, theta: float, prefix: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """u (N, L) → (mean_t |S_t|, |S_L|, |S_prefix|), each (N,), for one oscillator of angle θ per step."""
    t = np.arange(u.shape[1])
    rot = np.exp(-1j * theta * t).astype(np.complex64)
    s = np.cumsum(u * rot[None, :], axis=1)
    env = np.abs(s)
    return env.mean(axis=1), env[:, -1], env[:, prefix - 1]


def auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of ``score`` for ``positive`` (rank statistic)."""
    ranks = np.argsort(np.argsort(score)) + 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", nargs="+", type=int, default=[1000, 10000, 100000])
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--target", type=int, default=1, help="the class whose frequency the oscillator is near")
    parser.add_argument("--out", type=Path, default=Path("runs/longrange/resonance.json"))
    args = parser.parse_args(argv)
    task = First5(classes=args.classes)
    omega = 2 * np.pi / task.periods()[args.target]
    detunings = [0.0] + [float(d) for d in np.geomspace(1e-5, 0.2, 22)]
    rows = []
    for length in args.lengths:
        start = time.perf_counter()
        prefix = task.prefix(length)
        xs, ys = [], []
        for i in range(args.samples):
            x, y = task.sample(np.random.Generator(np.random.PCG64([7, i])), length)
            xs.append(x[:, 0])
            ys.append(y)
        u, y = np.stack(xs), np.asarray(ys)
        positive = y == args.target
        for d in detunings:
            mean_env, end_env, prefix_env = features(u, omega + d, prefix)
            rows.append({"length": length, "prefix": prefix, "detuning": d, "detuning_x_prefix": d * prefix,
                         "auc_mean": auc(mean_env, positive), "auc_end": auc(end_env, positive),
                         "auc_prefix": auc(prefix_env, positive)})
            r = rows[-1]
            print(f"L={length:>8} Δ={d:8.2e} Δ·prefix={d * prefix:9.2f}  AUC mean-env {r['auc_mean']:.2f}  "
                  f"end {r['auc_end']:.2f}  at prefix end {r['auc_prefix']:.2f}", flush=True)
        print(f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"samples": args.samples, "classes": args.classes, "target": args.target,
                                    "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
