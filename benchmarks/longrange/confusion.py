"""Test a saved first-5 % model at any length on fresh sequences: accuracy, per-class accuracy and the confusion
matrix (issue #25: does a model trained at one length hold at another, and how large is a test set's luck).

    python benchmarks/longrange/confusion.py runs/longrange/models2/d-200k-c.eqx 200000 500 8

Arguments: the model (``eqx.tree_serialise_leaves`` of the tiny HSSM explore.py trains: 2 blocks, hidden 16,
state 16, norm "layer", 4 classes), the length L, the number of test sequences and the data seed (a seed no stage
trained on gives sequences never seen). Inference streams (``he.predict(..., memory=he.Streaming(512))``), ten
sequences at a time. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

import hamecho as he
from hamecho.data.generated import First5, generated


def load_first5_model(path: str, classes: int = 4):
    """A saved model of the curriculum runs (explore.py's tiny HSSM on first-5 %: 2 blocks, hidden 16, state 16,
    norm "layer", float32)."""
    template = he.HSSM(in_dim=First5(classes=classes).channels, out_dim=classes, hidden=16, state=16, blocks=2,
                       norm="layer", task="classification", dtype=jnp.float32, key=jax.random.PRNGKey(0))
    return eqx.tree_deserialise_leaves(path, template)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("length", type=int)
    parser.add_argument("count", type=int, help="test sequences")
    parser.add_argument("data_seed", type=int, nargs="?", default=7)
    parser.add_argument("--classes", type=int, default=4)
    args = parser.parse_args()
    jax.config.update("jax_enable_x64", True)        # float64 cores, as the training runs
    source = generated("first5", length=args.length, sizes=(1, 1, args.count), seed=args.data_seed,
                       classes=args.classes, prefix_fraction=0.05)
    model = load_first5_model(args.model, args.classes)
    confusion = np.zeros((args.classes, args.classes), int)
    for start in range(0, args.count, 10):
        x, y = source.batch("test", np.arange(start, min(start + 10, args.count)))
        predicted = np.argmax(np.asarray(he.predict(model, jnp.asarray(x), memory=he.Streaming(512))), axis=-1)
        np.add.at(confusion, (y, predicted), 1)
    print(json.dumps({"model": args.model, "L": args.length, "n": args.count, "data_seed": args.data_seed,
                      "accuracy": float(np.trace(confusion) / args.count),
                      "per_class": [float(confusion[k, k] / max(confusion[k].sum(), 1)) for k in range(args.classes)],
                      "confusion": confusion.tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
