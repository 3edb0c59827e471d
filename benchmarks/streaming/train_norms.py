"""norm "layer" against norm "batch" in training (issue #14, target 4): same protocol, seeds and budget.

    python benchmarks/streaming/train_norms.py --task jv      --out runs/norms     # JapaneseVowels (main job's config)
    python benchmarks/streaming/train_norms.py --task first5  --out runs/norms     # synthetic first-5 %, L = 10,000

Runs ``hamecho.training.loop.run_one`` (the training loop of ``hamecho train``: its splits, evaluation,
test-at-best-validation and result files) for every (norm, algo, seed); the only change is the TOML key
``model.norm`` (the same initial arrays: LayerNorm has none). With ``--streaming CHUNK`` the norm "layer"
RHEL runs are repeated with ``train.memory = "streaming"`` as a third variant (same gradients up to
rounding, so the same training up to rounding). Writes norms-<task>.json and
prints a table: test accuracy mean ± std over the seeds per (algo, norm), and whether the two norms
agree within max(2 points, 1 std).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

TASKS = {
    # the main job's linear JapaneseVowels config as it is (800 steps, batch 32, float64, 3 seeds)
    "jv": ("configs/linear/JapaneseVowels.toml", {}),
    # synthetic first-5 % at L = 10,000: the repository's config scaled to fit a shared 2-core machine
    "first5": ("configs/linear/synthetic-first5.toml",
               {"data.length": 10_000, "data.num_samples": 512, "train.batch_size": 8, "train.steps": 300,
                "train.eval_every": 50, "train.early_stopping": False}),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/norms"))
    parser.add_argument("--algos", nargs="+", default=["bptt", "rhel"])
    parser.add_argument("--norms", nargs="+", default=["batch", "layer"])
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--streaming", type=int, default=0, help="also RHEL + Streaming(chunk) with norm layer")
    parser.add_argument("--set", nargs="*", default=[], help="more overrides, section.key=value")
    args = parser.parse_args(argv)

    import hamecho.training.loop as loop
    from hamecho.training.config import load_config, parse_override

    path, overrides = TASKS[args.task]
    overrides = {**overrides, **dict(parse_override(s) for s in args.set)}
    seeds = args.seeds or list(load_config(path, overrides).train.seeds)
    variants = [(norm, algo, None) for norm in args.norms for algo in args.algos]
    if args.streaming:
        variants.append(("layer", "rhel", args.streaming))
    results = []
    for norm, algo, chunk in variants:
        # the TOML keys model.norm and train.memory (the same model and arrays at the start: LayerNorm has none)
        config = load_config(path, {**overrides, "model.norm": norm, "train.algos": [algo],
                                    **({"train.memory": "streaming", "train.stream_chunk": chunk} if chunk else {})})
        label = f"{algo}" + (f"+streaming{chunk}" if chunk else "")
        out = args.out / args.task / (f"norm-{norm}" + (f"-streaming{chunk}" if chunk else ""))
        for seed in seeds:
            start = time.perf_counter()
            result = loop.read_result(loop.run_one(config, algo, seed, out, progress=False))
            results.append({"task": args.task, "norm": norm, "algo": label, "seed": seed,
                            "test_metric": result["test_metric"], "best_val_metric": result.get("best_val_metric"),
                            "steps": result.get("steps"), "wall_s": time.perf_counter() - start})
            print(f"{args.task} norm={norm} {label} seed {seed}: test {result['test_metric']:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    summary = summarise(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"norms-{args.task}.json").write_text(json.dumps({"config": path, "overrides": overrides,
                                                                 "runs": results, "summary": summary}, indent=1) + "\n")
    for line in table(summary):
        print(line)
    return 0


def summarise(results: list[dict]) -> list[dict]:
    rows = []
    for algo in dict.fromkeys(r["algo"] for r in results):
        per_norm = {}
        for norm in dict.fromkeys(r["norm"] for r in results if r["algo"] == algo):
            values = [100 * r["test_metric"] for r in results if r["algo"] == algo and r["norm"] == norm]
            std = statistics.stdev(values) if len(values) > 1 else 0.0
            per_norm[norm] = {"mean": statistics.mean(values), "std": std, "values": values}
        row = {"algo": algo, **{f"norm_{k}": v for k, v in per_norm.items()}}
        if {"batch", "layer"} <= set(per_norm):
            gap = abs(per_norm["layer"]["mean"] - per_norm["batch"]["mean"])
            allowed = max(2.0, per_norm["layer"]["std"], per_norm["batch"]["std"])
            row.update(gap_points=gap, allowed_points=allowed, agree=gap <= allowed)
        rows.append(row)
    return rows


def table(summary: list[dict]) -> list[str]:
    lines = ["| algo | norm batch: test acc % | norm layer: test acc % | gap | within max(2, 1 std)? |",
             "|---|---|---|---|---|"]
    cell = lambda s: "–" if s is None else f"{s['mean']:.1f} ± {s['std']:.1f}"
    for r in summary:
        verdict = "–" if "agree" not in r else ("yes" if r["agree"] else "**no**")
        gap = "–" if "gap_points" not in r else f"{r['gap_points']:.1f}"
        lines.append(f"| {r['algo']} | {cell(r.get('norm_batch'))} | {cell(r.get('norm_layer'))} | {gap} | {verdict} |")
    return lines


if __name__ == "__main__":
    sys.exit(main())
