"""``hamecho longrange``: the resumable long-range grid, lengths × tasks × methods × seeds (library:
``hamecho.tools.longrange``; results discussed in docs/longrange.md)."""
from __future__ import annotations

import argparse
import json
import shlex
import sys


def _run(args: argparse.Namespace) -> int:
    from ..tools import longrange as lr

    try:
        task_params = json.loads(args.task_params)
    except json.JSONDecodeError as error:
        raise ValueError(f"--task-params must be a JSON object, e.g. '{{\"classes\": 3}}'; {error}") from None
    if not isinstance(task_params, dict):
        raise ValueError(f"--task-params must be a JSON object; got {args.task_params!r}")
    settings = lr.RunSettings(
        steps=args.steps, batch=args.batch, lr=args.lr, theta_lr_scale=None if args.theta_lr_scale == 0
        else args.theta_lr_scale, hidden=args.hidden, state=args.state, blocks=args.blocks, hru=args.hru,
        chunk=args.chunk, curriculum_steps=args.curriculum, curriculum_factor=args.curriculum_factor,
        init_model=args.init_model, test_size=args.test_size, data_seed=args.data_seed, task_params=task_params,
        zero_head=args.zero_head, hru_output_norm=args.hru_output_norm)
    cells = lr.grid_cells(args.lengths, args.tasks, args.methods, args.seeds, settings)
    limit = None if args.memory_limit_gib is None else args.memory_limit_gib * lr.GIB
    rows = lr.run_grid(cells, args.out, memory_limit_bytes=limit, timeout_s=args.timeout,
                       progress=False if args.no_progress else None)
    paths = lr.write_outputs(rows, args.out, command_line(sys.argv[1:] if args.command_words is None
                                                          else args.command_words))
    print(lr.format_markdown(rows))
    print("written: " + ", ".join(map(str, paths)))
    return 0


def add_command(subparsers) -> None:
    from ..data.generated import GENERATED_TASKS
    from ..tools.longrange import METHODS, THETA_LR_SCALE

    parser = subparsers.add_parser(
        "longrange", help="train at long sequence lengths: lengths × tasks × methods × seeds, resumable",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Train a small HSSM (norm 'layer') on generated long-range tasks (made batch by batch, never "
                    "held) at each length, by each method, from each seed; one run per child process. Per run: "
                    "the test metric, steps, wall time, time per step and the whole-process peak memory. A run "
                    "whose peak (a line through the method's measured peaks at shorter L, or the sizing table) "
                    "would pass the memory limit is not started and reported as 'does not fit: needs ≈ X GiB'. "
                    "Rerunning the same command skips finished runs and resumes interrupted ones from their "
                    "checkpoints. Progress: a bar with an ETA, and OUT/progress.jsonl (JSON lines, as they come). "
                    "Writes OUT/longrange.json, longrange.md, metric.png, peak.png and time.png.")
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 10000], help="sequence lengths L")
    parser.add_argument("--tasks", nargs="+", choices=sorted(GENERATED_TASKS), default=["first5"],
                        help="generated tasks (hamecho.data.generated)")
    parser.add_argument("--task-params", default="{}",
                        help="JSON keyword arguments given to every task of --tasks, e.g. "
                             "'{\"classes\": 4, \"prefix_fraction\": 0.05}' (one task per call when they differ)")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=["streaming", "bptt_chunks"],
                        help="streaming: RHEL + Streaming; rhel; bptt; bptt_chunks: BPTT + TimeChunks")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds")
    parser.add_argument("--steps", type=int, default=300, help="training steps at L")
    parser.add_argument("--batch", type=int, default=16, help="samples per step")
    parser.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    parser.add_argument("--theta-lr-scale", type=float, default=THETA_LR_SCALE,
                        help="the HRUs' θ learn at min(lr, SCALE / L): one Adam step turns an oscillator's phase by "
                             "up to Δθ·L, so θ's rate must fall as 1/L (docs/longrange.md); 0: θ at --lr")
    parser.add_argument("--curriculum", type=int, default=0, metavar="STEPS",
                        help="train STEPS steps at L / --curriculum-factor first, then --steps at L")
    parser.add_argument("--curriculum-factor", type=int, default=10)
    parser.add_argument("--init-model", default=None,
                        help="start every run from this saved model (equinox tree_serialise_leaves, same shape)")
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--state", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=2)
    parser.add_argument("--hru", choices=("linear", "nonlinear"), default="linear")
    parser.add_argument("--zero-head", action="store_true",
                        help="HSSM(zero_head=True): the head starts at 0, so the initial loss is log(classes) or the "
                             "targets' mean square at any L")
    parser.add_argument("--hru-output-norm", action="store_true",
                        help="HSSM(hru_output_norm=True): each HRU's output normalised per step before the GELU; "
                             "the regression tasks (adding, ppg) need it at long L, their tanh head saturates "
                             "otherwise (docs/longrange.md)")
    parser.add_argument("--chunk", type=int, default=512, help="time chunk of Streaming and TimeChunks")
    parser.add_argument("--test-size", type=int, default=300,
                        help="test samples (inference runs in batches of ≈ 2^25 / (L · hidden) samples: at L = 10^6 "
                             "a few hundred samples take a while)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated dataset")
    parser.add_argument("--memory-limit-gib", type=float, default=None,
                        help="do not start runs estimated above this peak (default: the memory available when the "
                             "grid starts, MemAvailable)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds per run in this call, checked as each step ends (a run stopped resumes on a "
                             "rerun)")
    parser.add_argument("--out", default="runs/longrange/grid", help="folder of the runs and results")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=_run, command_words=None)


def command_line(argv) -> str:
    """The command these arguments stand for (recorded in the outputs)."""
    return " ".join(shlex.quote(w) for w in ["hamecho", *argv])
