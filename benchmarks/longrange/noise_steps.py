"""The issue's observation, and what the options do to it: a linear HSSM on N(0,1) inputs at L = 49,920.

    python benchmarks/longrange/noise_steps.py --length 49920 --steps 4

6 blocks, hidden 64, state 16, norm "layer", batch 4, 5 classes, random labels, RHEL + Streaming(512), Adam, float64
cores. Nothing can be learned; the loss after each step shows how far one Adam step moves the logits. Variants:
the paper's model at lr 1e-3; ``zero_head``; ``zero_head`` with the oscillators' parameters at lr 1e-3·(1000/L).
"""
from __future__ import annotations

import argparse
import json

import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402

import hamecho as he  # noqa: E402
from hamecho.nn.hssm import parameter_groups  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--length", type=int, default=49_920)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--variants", nargs="+", default=["paper", "zero_head", "zero_head+theta_lr"])
    args = p.parse_args(argv)
    key_x, key_y = jax.random.split(jax.random.PRNGKey(1))
    x = jax.random.normal(key_x, (4, args.length, 6), jnp.float32)
    y = jax.random.randint(key_y, (4,), 0, 5)
    for variant in args.variants:
        model = he.HSSM(in_dim=6, out_dim=5, hidden=64, state=16, blocks=6, norm="layer", dtype=jnp.float32,
                        zero_head=variant.startswith("zero_head"), key=jax.random.PRNGKey(0))
        if variant.endswith("theta_lr"):
            rates = {"rest": optax.adam(1e-3), "core": optax.adam(1e-3 * 1000 / args.length)}
            labels = parameter_groups(model)
            optimizer = optax.multi_transform(rates, lambda params: labels)  # noqa: B023  (used at once)
        else:
            optimizer = optax.adam(1e-3)
        state = he.init_optimizer(optimizer, model)
        losses = []
        for _ in range(args.steps + 1):   # the last call's loss is that after `steps` updates
            new_model, new_state, loss = he.train_step(model, state, x, y, optimizer, gradient=he.RHEL(),
                                                       memory=he.Streaming(512))
            losses.append(float(loss))
            model, state = new_model, new_state
        print(json.dumps({"variant": variant, "length": args.length, "losses": losses}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
