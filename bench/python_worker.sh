#!/usr/bin/env bash
# python_worker.sh - samples/s of the PyTorch worker (examples/torch_fmnist.py)
# through mltunerd against the same PyTorch loop alone, fmnist-mlp, batch 128,
# one torch thread each, on the CPU (#14).
#
#   bench/python_worker.sh [REPEATS]      (default 3; needs build/ and python3-torch)
#
# Interleaved, REPEATS times each, the median reported (a shared, noisy host):
#   alone-none   torch_fmnist.py --alone --optimizer none: forward and backward
#                only, the work a worker does itself (2 epochs, the second's rate)
#   alone-adamw  the same with torch.optim.AdamW stepping in the process
#   daemon       scripts/run-local, 1 worker, tuner.logic=fixed (sf-adamw on the
#                shard, batch 128, staleness 0), 2 epochs: the worker's own
#                "samples/s" line (its RUN tasks: pull, forward, backward, push,
#                clock; not the loading or the tests)
# The last line: torch_daemon_vs_alone (daemon over alone-adamw, the whole
# loop), torch_daemon_vs_fwdbwd (over alone-none) and torch_daemon_sps.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cd "$here"
reps=${1:-3}
py=/usr/bin/python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
declare -A runs
for ((r = 0; r < reps; r++)); do
    for o in none adamw; do
        v=$($py examples/torch_fmnist.py --alone --epochs 2 --batch 128 --optimizer $o | tail -1 | awk '{print $5}')
        runs[alone-$o]+="$v "
    done
    scripts/run-local conf/jobs/fmnist-mlp.conf --workers 1 --quiet --out "$tmp/d$r" \
        --set model.type=external --set tuner.logic=fixed --set stop.max_epochs=2 \
        --set stop.target_accuracy=0 --set checkpoint_interval_s=0 --set tuner.warm_start= \
        --worker-cmd "$py examples/torch_fmnist.py" >/dev/null
    v=$(sed -n 's/.*s: \([0-9]*\) samples\/s/\1/p' "$tmp/d$r/logs/worker0.log" | tail -1)
    runs[daemon]+="$v "
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
printf '%-12s %-10s %s\n' config median runs
for k in alone-none alone-adamw daemon; do
    printf '%-12s %-10s %s\n' "$k" "$(echo "${runs[$k]}" | median)" "${runs[$k]}"
done
d=$(echo "${runs[daemon]}" | median)
# the last line: the figures a script reads
awk -v d="$d" -v n="$(echo "${runs[alone-none]}" | median)" \
    -v a="$(echo "${runs[alone-adamw]}" | median)" \
    'BEGIN {printf "torch_daemon_vs_alone=%.2f torch_daemon_vs_fwdbwd=%.2f torch_daemon_sps=%.0f\n", d / a, d / n, d}'
