"""How far one Adam step moves the logits, against L: the learning rate a parameter's step means grows with L.

    python benchmarks/longrange/step_scale.py --lengths 1000 10000 100000 --out runs/longrange/step_scale.json

Tiny HSSM (2 blocks, hidden 16, norm "layer", the paper's initialisation), first-5 % (3 classes, prefix 2 %),
batch 8, float64 cores. For each L and model seed: the logits' RMS at initialisation, and the RMS change of the
logits of a held-out batch after one Adam step (lr 1e-3), once for the whole model and once for each part alone
(the others' updates zeroed): the oscillators' θ (a and steps of every block), everything but θ, the head,
the last block, the first block, the encoder.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import equinox as eqx  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import hamecho as he  # noqa: E402
from hamecho.data.generated import generated  # noqa: E402

THETA = lambda m: [b.hru.theta for b in m.blocks]       # noqa: E731  the oscillators' a and steps, every block
PARTS = {"theta": THETA, "head": lambda m: m.head, "last block": lambda m: m.blocks[-1],
         "first block": lambda m: m.blocks[0], "encoder": lambda m: m.encoder}


def zeros_like(tree):
    return jax.tree_util.tree_map(lambda a: None if a is None else jnp.zeros_like(a), tree)


def only(tree, part):
    """``tree`` (updates) with every array outside ``part`` set to zero."""
    return eqx.tree_at(part, zeros_like(tree), part(tree))


def all_but(tree, part):
    """``tree`` (updates) with the arrays of ``part`` set to zero."""
    return eqx.tree_at(part, tree, zeros_like(part(tree)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lengths", nargs="+", type=int, default=[1000, 10000, 100000])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--out", type=Path, default=Path("runs/longrange/step_scale.json"))
    args = p.parse_args(argv)
    rows = []
    for length in args.lengths:
        source = generated("first5", length=length, sizes=(8, 8, 0), classes=3, prefix_fraction=0.02)
        x, y = map(jnp.asarray, source.batch("train", np.arange(8)))
        x_eval = jnp.asarray(source.batch("val", np.arange(8))[0])
        for seed in args.seeds:
            model = he.HSSM(in_dim=2, out_dim=3, hidden=16, state=16, blocks=2, norm="layer", dtype=jnp.float32,
                            key=jax.random.PRNGKey(seed))
            optimizer = optax.adam(1e-3)
            state = he.init_optimizer(optimizer, model)
            loss, grads = he.value_and_grad(model, x, y, gradient=he.RHEL(), memory=he.Streaming(512))
            spec = he.trainable(model)
            updates, _ = optimizer.update(eqx.filter(grads, spec), state, eqx.filter(model, spec))
            before = he.predict(model, x_eval)
            row = {"length": length, "seed": seed, "loss": float(loss),
                   "logit_rms": float(jnp.sqrt(jnp.mean(before**2)))}
            for name, part in {"all": None, "all but theta": "but", **PARTS}.items():
                step = (updates if part is None else all_but(updates, THETA) if part == "but" else
                        only(updates, part))
                after = he.predict(eqx.apply_updates(model, step), x_eval)
                row[f"dlogit_{name}"] = float(jnp.sqrt(jnp.mean((after - before) ** 2)))
            rows.append(row)
            print(json.dumps(row), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
