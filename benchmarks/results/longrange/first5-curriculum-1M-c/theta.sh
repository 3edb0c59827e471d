#!/bin/bash
# the 5x10^5 stage again with theta's learning rate raised (3e-5, 1e-4 instead of 3e-6), all else as e-500k:
# does retuning the oscillators at 5x10^5 recover what the 2x10^5 model loses there?
cd /work/main
export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
P='{"classes":4,"prefix_fraction":0.05}'
M=runs/longrange/models2; O=runs/longrange/c3
run() { core=$1; name=$2; shift 2; echo "== $name $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)";
  taskset -c $core .venv/bin/python benchmarks/longrange/explore.py --task-params "$P" "$@" --out $O/$name.jsonl > $O/$name.out 2> $O/$name.err
  echo "rc $? $name $(date +%T)"; tail -1 $O/$name.jsonl | cut -c1-300
  taskset -c $core .venv/bin/python benchmarks/longrange/confusion.py $M/$name.eqx 500000 200 7 >> $O/confusion-theta.jsonl; }
common="--length 500000 --batch 16 --steps 60 --eval-every 30 --val-size 48 --test-size 100 --eval-batch 8 --lr 2e-4 --data-seed 4 --keep-best --load $M/d-200k-c.eqx"
run 0 e-500k-theta3e-5 $common --theta-lr 3e-5 --save $M/e-500k-theta3e-5.eqx &
run 1 e-500k-theta1e-4 $common --theta-lr 1e-4 --save $M/e-500k-theta1e-4.eqx &
wait
