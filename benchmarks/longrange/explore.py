"""One exploratory training run on a generated long-range task through the public API (issue #25, phase 1).

    python benchmarks/longrange/explore.py --task first5 --length 20000 --method streaming --steps 300 \
        --out runs/longrange/explore/first5-20000.jsonl

Writes one JSON line per logged step (loss, the slowest and fastest oscillator of every block) and a final line
with the test accuracy (or MSE). Model variants are the HSSM's own options (``--head-zero``, ``--periods``),
prototypes patched in here (``--post-norm``, ``--pool-norm``, ``--c-scale``) or optimiser settings (``--lr``,
``--theta-lr``, ``--head-lr``, ``--clip``); ``--init-only`` prints the initial loss and logit scale and stops;
``--save``/``--load`` keep a model for a later run at another length.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

import hamecho as he
from hamecho.data.generated import GENERATED_TASKS, GeneratedSplits
from hamecho.nn.hssm import parameter_groups
from hamecho.tools.longrange import METHODS, method_choices


def build_source(args) -> GeneratedSplits:
    params = json.loads(args.task_params) if args.task_params else {}
    generator = GENERATED_TASKS[args.task](**params)
    return GeneratedSplits(generator, args.length, (args.steps * args.batch, args.val_size, args.test_size),
                           seed=args.data_seed)


def build_model(args, source, key):
    kwargs = {}
    if args.head_zero:
        kwargs["zero_head"] = True
    if args.post_norm:
        kwargs["hru_output_norm"] = True
    if args.periods:
        kwargs["periods"] = tuple(float(p) if p != "L" else float(args.length) for p in args.periods)
    return he.HSSM(in_dim=source.channels, out_dim=source.out_dim, hidden=args.hidden, state=args.state,
                   blocks=args.blocks, hru=args.hru, norm="layer", task=source.task, output_step=source.output_step,
                   dtype=jnp.float32, key=key, **kwargs)


def build_optimizer(args, model):
    def adam(lr):
        chain = [optax.clip_by_global_norm(args.clip)] if args.clip else []
        return optax.chain(*chain, optax.adam(lr))
    if args.theta_lr is None and args.head_lr is None:
        return adam(args.lr)
    labels = parameter_groups(model)                       # "core" (the HRUs' θ) and "rest"
    labels = eqx.tree_at(lambda m: m.head, labels, jax.tree_util.tree_map(lambda _: "head", labels.head))
    rates = {"rest": args.lr, "core": args.lr if args.theta_lr is None else args.theta_lr,
             "head": args.lr if args.head_lr is None else args.head_lr}
    # labels as a function: optax would call a callable label tree (an eqx.Module is callable)
    return optax.multi_transform({name: adam(lr) for name, lr in rates.items()}, lambda params: labels)


def block_angles(block) -> np.ndarray | None:
    """The rotation per step θ = arccos(1 − δ²A/2) of each oscillator of a block's linear HRU (None for another
    HRU)."""
    theta = block.hru.core_parameters()
    if "a" not in theta:
        return None
    step = jax.nn.sigmoid(theta["steps"])
    stiffness = jnp.minimum(jax.nn.relu(theta["a"]), 0.999 * 4 / step**2)
    return np.arccos(np.clip(1 - np.asarray(step**2 * stiffness) / 2, -1, 1))


def oscillator_angles(model):
    """Per block: (smallest, largest) rotation per step of the linear HRU's oscillators (``block_angles``)."""
    angles = [block_angles(block) for block in model.blocks]
    if any(a is None for a in angles):
        return None
    return [[float(a.min()), float(a.max())] for a in angles]


def evaluate(model, source, split, batch, method):
    """Accuracy (classification) or MSE (regression) and mean loss over the whole split, inference mode."""
    n = source.size(split)
    correct, loss_sum, sq_sum, count = 0, 0.0, 0.0, 0
    for start in range(0, n, batch):
        x, y = source.batch(split, np.arange(start, min(start + batch, n)))
        out = he.predict(model, jnp.asarray(x), memory=he.Streaming(512))
        if source.task == "classification":
            lp = jax.nn.log_softmax(out, axis=-1)
            loss_sum += float(-jnp.sum(lp[jnp.arange(len(y)), y]))
            correct += int(jnp.sum(jnp.argmax(out, -1) == y))
        else:
            sq_sum += float(jnp.sum((out - y) ** 2)) / (y.shape[1] * y.shape[2])
        count += len(y)
    if source.task == "classification":
        return {"accuracy": correct / count, "loss": loss_sum / count}
    return {"mse": sq_sum / count}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--task", default="first5", choices=sorted(GENERATED_TASKS))
    p.add_argument("--task-params", default="", help='JSON, e.g. \'{"classes": 3}\'')
    p.add_argument("--length", type=int, default=2000)
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--blocks", type=int, default=2)
    p.add_argument("--hru", default="linear")
    p.add_argument("--periods", nargs=2, default=None, help="min and max oscillator period in steps ('L': the length)")
    p.add_argument("--post-norm", action="store_true",
                   help="HSSM(hru_output_norm=True): each HRU output normalised per step before the GELU")
    p.add_argument("--head-lr", type=float, default=None, help="a separate Adam learning rate for the head")
    p.add_argument("--pool-norm", action="store_true",
                   help="prototype: LayerNorm each step's features before mean pooling (not with streaming)")
    p.add_argument("--head-zero", action="store_true", help="HSSM(zero_head=True): the head starts at 0")
    p.add_argument("--c-scale", type=float, default=None, help="prototype: multiply every HRU's C at init")
    p.add_argument("--method", default="streaming", choices=METHODS)
    p.add_argument("--chunk", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--theta-lr", type=float, default=None)
    p.add_argument("--clip", type=float, default=None)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--eval-every", type=int, default=0)
    p.add_argument("--val-size", type=int, default=128)
    p.add_argument("--test-size", type=int, default=300)
    p.add_argument("--eval-batch", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dropout", action="store_true", help="train with dropout (a key per step)")
    p.add_argument("--core-dtype", default="float64", choices=["float64", "input"],
                   help="float64 cores (x64 on, as hamecho train) or the model's float32")
    p.add_argument("--init-only", action="store_true")
    p.add_argument("--keep-best", action="store_true",
                   help="also test the model of the evaluation with the best validation loss (the protocol's early "
                        "stopping: --eval-every evaluations, the last one at the end), and save that one")
    p.add_argument("--save", type=Path, default=None, help="write the trained model here (equinox leaves)")
    p.add_argument("--load", type=Path, default=None, help="start from this saved model (same shape options)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.core_dtype == "float64":
        jax.config.update("jax_enable_x64", True)   # float64 cores, float32 model: hamecho train's default

    source = build_source(args)
    if args.pool_norm:
        from hamecho.nn import hssm, layers
        original_decode = hssm.HSSM.decode
        hssm.HSSM.decode = lambda self, h: original_decode(self, layers.LayerNorm().normalise(h))
    model = build_model(args, source, jax.random.PRNGKey(args.seed))
    if args.load:
        model = eqx.tree_deserialise_leaves(args.load, model)
    if args.c_scale is not None:
        model = eqx.tree_at(lambda m: [b.hru.C for b in m.blocks], model,
                            [b.hru.C * args.c_scale for b in model.blocks])
    log = args.out.open("w") if args.out else None

    def emit(record):
        line = json.dumps(record)
        print(line, flush=True)
        if log:
            log.write(line + "\n")
            log.flush()

    emit({"config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
          "parameters": he.count_parameters(model)})
    if args.init_only:
        x, y = source.batch("val", np.arange(min(args.val_size, 64)))
        out = he.predict(model, jnp.asarray(x), memory=he.Streaming(512))
        lp = jax.nn.log_softmax(out, axis=-1)
        emit({"init_loss": float(-jnp.mean(lp[jnp.arange(len(y)), y])), "logit_std": float(jnp.std(out)),
              "angles": oscillator_angles(model)})
        return 0
    optimizer = build_optimizer(args, model)
    opt_state = he.init_optimizer(optimizer, model)
    choices = method_choices(args.method, args.chunk)
    key = jax.random.PRNGKey(10_000 + args.seed)
    start = time.perf_counter()
    first_step_s, step = 0.0, -1
    best = None   # (validation loss, step, model) of the best evaluation so far (--keep-best)
    for step in range(args.steps):
        x, y = source.batch("train", np.arange(step * args.batch, (step + 1) * args.batch))
        step_key = jax.random.fold_in(key, step) if args.dropout else None
        t0 = time.perf_counter()
        model, opt_state, loss = he.train_step(model, opt_state, jnp.asarray(x), jnp.asarray(y), optimizer,
                                               key=step_key, **choices)
        loss = float(loss)
        if step == 0:
            first_step_s = time.perf_counter() - t0
        if not math.isfinite(loss):
            emit({"step": step, "loss": loss, "diverged": True})
            break
        if step % args.log_every == 0 or step == args.steps - 1:
            emit({"step": step, "loss": loss, "elapsed_s": round(time.perf_counter() - start, 2),
                  "angles": oscillator_angles(model)})
        last = step + 1 == args.steps
        if args.eval_every and (step + 1) % args.eval_every == 0 and (not last or args.keep_best):
            val = evaluate(model, source, "val", args.eval_batch, args.method)
            emit({"step": step + 1, "val": val})
            score = val.get("loss", val.get("mse"))
            if args.keep_best and (best is None or score <= best[0]):
                best = (score, step + 1, model)
    train_s = time.perf_counter() - start
    steps_done = step + 1
    result = {"final": True, "steps": steps_done, "train_s": round(train_s, 1), "first_step_s": round(first_step_s, 2),
              "s_per_step": round((train_s - first_step_s) / max(steps_done - 1, 1), 4),
              "test": evaluate(model, source, "test", args.eval_batch, args.method)}
    if best is not None:
        result["best_val_step"] = best[1]
        result["test_at_best_val"] = (result["test"] if best[1] == steps_done
                                      else evaluate(best[2], source, "test", args.eval_batch, args.method))
        model = best[2]
    emit(result)
    if args.save:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        eqx.tree_serialise_leaves(args.save, model)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
