#!/bin/bash
# the length curriculum again (the saved models of the first run were lost with its checkout), the 10^6 stage
# with a lower learning rate, more steps and the model of the best validation loss kept (--keep-best)
cd "$(git rev-parse --show-toplevel)"
export XLA_FLAGS=--xla_cpu_multi_thread_eigen=false
P='{"classes":4,"prefix_fraction":0.05}'
M=runs/longrange/models2; O=runs/longrange/c2
run() { name=$1; shift; echo "== $name $(date +%T) load $(cut -d' ' -f1-3 /proc/loadavg)";
  taskset -c 1 .venv/bin/python benchmarks/longrange/explore.py --task-params "$P" "$@" --out $O/$name.jsonl > $O/$name.out 2> $O/$name.err &
  pid=$!; : > $O/$name.vmhwm.txt
  while kill -0 $pid 2>/dev/null; do grep VmHWM /proc/$pid/status >> $O/$name.vmhwm.txt 2>/dev/null; sleep 20; done
  wait $pid; echo "rc $? $(date +%T)"; tail -1 $O/$name.jsonl | cut -c1-400; }
run d-2k --length 2000 --batch 16 --steps 300 --lr 3e-3 --test-size 300 --save $M/d-2k.eqx
run d-20k --length 20000 --batch 16 --steps 100 --eval-every 25 --lr 1e-3 --theta-lr 3e-4 --test-size 300 --load $M/d-2k.eqx --save $M/d-20k.eqx
run d-200k --length 200000 --batch 8 --steps 50 --eval-every 25 --val-size 64 --test-size 150 --eval-batch 25 --lr 1e-3 --theta-lr 3e-5 --load $M/d-20k.eqx --save $M/d-200k.eqx
run d-200k-b --length 200000 --batch 16 --steps 100 --eval-every 25 --val-size 64 --test-size 150 --eval-batch 25 --lr 1e-3 --theta-lr 3e-5 --data-seed 1 --load $M/d-200k.eqx --save $M/d-200k-b.eqx
run d-200k-c --length 200000 --batch 16 --steps 60 --eval-every 30 --val-size 64 --test-size 150 --eval-batch 25 --lr 3e-4 --theta-lr 1e-5 --data-seed 2 --load $M/d-200k-b.eqx --save $M/d-200k-c.eqx
run d-1M-b --length 1000000 --batch 8 --steps 200 --eval-every 40 --val-size 48 --test-size 100 --eval-batch 8 --lr 2e-4 --theta-lr 1e-6 --data-seed 3 --keep-best --load $M/d-200k-c.eqx --save $M/d-1M-b.eqx
