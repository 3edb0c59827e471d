"""The learning rules at equal device passes on a task the comparison's small model can learn (issue #26).

``hamecho rules``' own training problem (first-5 % at L = 20, hidden 4) is not learnt by any rule in 300 or
1,200 passes (docs/physical.md), so nothing separates the rules there. This runs the same comparison
(``hamecho.tools.robustness.comparison``) on JapaneseVowels (9 classes, L = 29, the task of the circuit
training above), with the model of that training (hidden 8, state 4, batch 16, Adam 1e-2), 3 seeds:

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false taskset -c 0 python benchmarks/rules/japanese_vowels.py \
        --out benchmarks/results/rules/japanese-vowels
"""
import argparse

from hamecho.tools.robustness.comparison import ComparisonSetup, compare_rules
from hamecho.tools.robustness.comparison_outputs import write_comparison

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--passes", type=int, default=900)
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
parser.add_argument("--points", nargs="+", default=["ideal=0", "damping=1", "circuit=1"], metavar="KNOB=LEVEL")
parser.add_argument("--out", default="benchmarks/results/rules/japanese-vowels")
args = parser.parse_args()
points = tuple((knob, float(level)) for knob, level in (p.split("=") for p in args.points))
setup = ComparisonSetup(dataset="uea/JapaneseVowels", length=29, num_samples=None, hidden=8, state=4, batch=16,
                        lr=1e-2, passes=args.passes, seeds=tuple(args.seeds), training_points=points)
result = compare_rules(setup, gradients=False, command="python benchmarks/rules/japanese_vowels.py "
                       + " ".join(f"--{k} {v}" for k, v in (("passes", args.passes), ("out", args.out))))
for path in write_comparison(result, args.out, args.out):
    print(path)
