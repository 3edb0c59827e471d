"""How far each first-5 % class frequency is from the nearest oscillator of each block, for saved curriculum models
(issue #25: why the 2×10⁵ model does not carry to 5×10⁵ and 10⁶).

    python benchmarks/longrange/detuning.py runs/longrange/models2/d-2k.eqx runs/longrange/models2/d-200k-c.eqx ...

Prints per model and block: the class periods' angular frequencies ω_k = 2π/(8 + 4k) and |θ − ω_k| of the
nearest oscillator θ (rotation per step, ``explore.block_angles``), and how many oscillators lie within
1e-2 and 1e-3 of some class (NOTES.md section 2: the noise-limited band is ~1e-2 at 10⁵, a few 1e-3 at 10⁶).
"""
from __future__ import annotations

import argparse
import json

import numpy as np
from confusion import load_first5_model  # beside this script
from explore import block_angles

from hamecho.data.generated import First5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    task = First5(classes=args.classes)
    omega = 2 * np.pi / task.periods()
    for path in args.models:
        model = load_first5_model(path, args.classes)
        for index, block in enumerate(model.blocks):
            theta = np.asarray(block_angles(block), dtype=np.float64).ravel()
            nearest = [float(np.min(np.abs(theta - w))) for w in omega]
            close = np.min(np.abs(theta[:, None] - omega[None, :]), axis=1)
            print(json.dumps({"model": path, "block": index + 1, "omega": [round(float(w), 4) for w in omega],
                              "nearest_detuning": [float(f"{d:.2e}") for d in nearest],
                              "within_1e-2": int(np.sum(close < 1e-2)), "within_1e-3": int(np.sum(close < 1e-3)),
                              "oscillators": int(theta.size)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
