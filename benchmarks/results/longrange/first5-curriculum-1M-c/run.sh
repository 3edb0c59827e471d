#!/bin/bash
# third 10^6 attempt from the saved 2x10^5 model of the curriculum (d-200k-c, 92.7 % at 2x10^5):
# an intermediate stage at 5x10^5 (the oscillators' tuning must be 5x finer at 10^6 than at 2x10^5), then 10^6 at
# batch 16 (the second attempt's batch 8 swung 0.3-3.1 in loss) with a lower rate, best-validation model kept
cd /work/main
export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
P='{"classes":4,"prefix_fraction":0.05}'
M=runs/longrange/models2; O=runs/longrange/c3
run() { name=$1; shift; echo "== $name $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)";
  taskset -c 1 .venv/bin/python benchmarks/longrange/explore.py --task-params "$P" "$@" --out $O/$name.jsonl > $O/$name.out 2> $O/$name.err &
  pid=$!; : > $O/$name.vmhwm.txt
  while kill -0 $pid 2>/dev/null; do grep VmHWM /proc/$pid/status >> $O/$name.vmhwm.txt 2>/dev/null; sleep 20; done
  wait $pid; echo "rc $? $(date +%T)"; tail -1 $O/$name.jsonl | cut -c1-400; }
run e-500k --length 500000 --batch 16 --steps 60 --eval-every 30 --val-size 48 --test-size 100 --eval-batch 8 --lr 2e-4 --theta-lr 3e-6 --data-seed 4 --keep-best --load $M/d-200k-c.eqx --save $M/e-500k.eqx
run e-1M --length 1000000 --batch 16 --steps 90 --eval-every 30 --val-size 48 --test-size 100 --eval-batch 8 --lr 1e-4 --theta-lr 1e-6 --data-seed 5 --keep-best --load $M/e-500k.eqx --save $M/e-1M.eqx
