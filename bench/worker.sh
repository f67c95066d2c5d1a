#!/usr/bin/env bash
# worker.sh - training speed of mltuner-worker against PyTorch on the CPU, and
# of a job run through mltunerd against the same worker standalone.
#
#   MLT_BUILD_ROOT=build MLT_SOURCE_ROOT=. bench/worker.sh
#   (or: meson test -C build --benchmark worker)
#
# In one run, on the same machine, so that the ratios mean something on a
# shared, noisy host:
#   1. ours standalone: `mltuner-worker --standalone` on fmnist-mlp (subset
#      20000, 3 epochs) and fmnist-cnn (subset 3000, 1 epoch), batch 128, lr 0.03,
#      momentum 0.9; samples/s from its "# training time" line (steps and
#      updates only: no loading, no evaluation; data.validation=1000 only
#      shortens the untimed evaluation).
#   2. the peer: bench/torch_peer.py, the same models and step on random
#      inputs held in memory (20 warm-up steps, then >= 3 s timed; every
#      configuration PEER_REPEATS times, interleaved).
#   3. ours through a daemon: one mltunerd with a control endpoint and one
#      worker; fmnist-mlp submitted with mltunerctl (tuner.logic=fixed,
#      workers=1, subset 20000, 6 epochs) at staleness 0 and 3. samples/s from
#      the clock events of progress.jsonl, two ways: over the whole clock span,
#      (clocks x 128) / (t_last - t_first), which includes the test run
#      between the two epochs; and over training only, the clock-to-clock
#      intervals with no test in them (what the standalone figure measures, so
#      that is the one the ratio uses).
# Each side is reported at its best configuration, every configuration
# measured here; ours (standalone and through the daemon) by the median of
# its repeats (runs of 1-3 s: the best of several would be the luckiest
# scheduling on this shared host, not the configuration), torch by its best
# run (each >= 3 s, so close to its median, and the stricter peer): ours with
# 1 and 2 threads (--threads, and OPENBLAS_NUM_THREADS for a worker without
# it; how the worker uses them, BLAS threads or batch slices, is its default
# for the model, shown in each run's line); torch with 1 or 2 torch threads and
# OPENBLAS_NUM_THREADS=1, eager or jit.trace; both with each OPENBLAS_CORETYPE
# of $CORETYPES ("auto" leaves it unset: OpenBLAS 0.3.21 takes some
# virtualised AVX-512 CPUs for a Prescott and runs SSE3 kernels, unless told;
# the worker may name a better core itself). The daemon runs use the coretype
# that won ours standalone mlp.
#   4. (#15) the daemon's cost with the cores split fairly: the job's worker
#      with one compute thread against the standalone worker with one thread
#      (same coretype), daemon_vs_standalone_1t; and small batches: the same
#      job (staleness 0, one thread) at batch 32, in the same repeats as the
#      batch-128 runs, b32_vs_b128 = its samples/s (training only) over
#      batch 128's; next to it the standalone worker's own ratio (one
#      thread, batch 32 over 128, run in the same repeats): what the compute
#      alone allows.
# Prints a table (what, ours, peer, ratio) and, last, the line
#   mlp_vs_torch=X cnn_vs_torch=Y daemon_vs_standalone=Z daemon_vs_standalone_1t=U b32_vs_b128=V
# Ratios above 1 mean ours is faster. Exit 77 (skipped) without Fashion-MNIST.
set -euo pipefail

BUILD=${MLT_BUILD_ROOT:?set MLT_BUILD_ROOT to the build directory}
SRC=${MLT_SOURCE_ROOT:-$(cd "$(dirname "$0")/.." && pwd)}
WORKER=$BUILD/worker/mltuner-worker
DAEMON=$BUILD/daemon/mltunerd
CTL=$BUILD/daemon/mltunerctl
PEER=$SRC/bench/torch_peer.py
PY=/usr/bin/python3 # Debian's, which sees python3-torch (a pyenv python3 may not)
FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
BATCH=128
MLP_SUBSET=20000
CNN_SUBSET=3000
DAEMON_EPOCHS=6
MLP_EPOCHS=3
CORETYPES=${CORETYPES:-auto SkylakeX}
# repeats of each configuration, the best kept (the host is shared and noisy; a
# standalone mlp run is 1-2 s of training, a daemon job 2-4 s)
MLP_REPEATS=${MLP_REPEATS:-3}
CNN_REPEATS=${CNN_REPEATS:-1}
DAEMON_REPEATS=${DAEMON_REPEATS:-3}
PEER_REPEATS=${PEER_REPEATS:-2} # rounds of torch_peer.py's configurations (3 s each)

for b in "$WORKER" "$DAEMON" "$CTL"; do
    [ -x "$b" ] || { echo "worker.sh: $b is not built" >&2; exit 1; }
done
[ -r "$PEER" ] || { echo "worker.sh: no $PEER (set MLT_SOURCE_ROOT)" >&2; exit 1; }
if [ ! -r "$FMNIST" ]; then
    echo "worker.sh: Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist): skipped"
    exit 77
fi

TMP=$(mktemp -d /tmp/mlt-bench-worker-XXXXXX)
PIDS=()
cleanup() {
    local p
    for p in "${PIDS[@]}"; do
        if kill "$p" 2>/dev/null; then
            { wait "$p"; } 2>/dev/null || true
        fi
    done
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "# logs kept in $TMP" >&2
    else
        rm -rf "$TMP"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
    echo "worker.sh: $*" >&2
    KEEP_TMP=1
    exit 1
}

# x / y with 2 decimals, "n/a" if either is missing or y is 0
ratio() { awk -v x="$1" -v y="$2" 'BEGIN { if (x == "" || y == "" || y + 0 == 0) print "n/a"; else printf "%.2f\n", x / y }'; }
# success if x > y (an empty y always loses)
greater() { awk -v x="$1" -v y="$2" 'BEGIN { exit !(x != "" && (y == "" || x + 0 > y + 0)) }'; }
# blas_env CORETYPE: the env(1) arguments that select it ("auto": unset)
blas_env() {
    if [ "$1" = auto ]; then echo "-u OPENBLAS_CORETYPE"; else echo "OPENBLAS_CORETYPE=$1"; fi
}

# The binaries run from a copy, so that a rebuild during the run (ninja
# relinking one) cannot break it half-way; a copy that does not run (caught
# mid-link) is taken again, for up to a minute. Libraries the build directory
# holds (a shared libmltuner) are copied too and found through LD_LIBRARY_PATH.
mkdir "$TMP/bin"
for ((try = 1; ; try++)); do
    ok=1
    for b in "$WORKER" "$DAEMON" "$CTL"; do
        cp "$b" "$TMP/bin/" || ok=0
        for lib in $(ldd "$b" 2>/dev/null | awk -v d="$BUILD" 'index($3, d) == 1 { print $3 }'); do
            cp -L "$lib" "$TMP/bin/" || ok=0
        done
    done
    export LD_LIBRARY_PATH="$TMP/bin${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    for b in "$WORKER" "$DAEMON" "$CTL"; do
        "$TMP/bin/${b##*/}" --help >/dev/null 2>&1 || ok=0
    done
    [ $ok = 1 ] && break
    [ "$try" -lt 12 ] || die "the built binaries do not run (a build in progress?)"
    echo "# the binaries do not run yet (a build in progress?); retrying in 5 s" >&2
    sleep 5
done
WORKER=$TMP/bin/${WORKER##*/}
# a worker with --threads N sets its BLAS threads itself (and a job's worker
# otherwise uses 1, whatever OPENBLAS_NUM_THREADS says): pass both
threads_arg() { if "$WORKER" --help 2>&1 | grep -q -- --threads; then echo "--threads $1"; fi; }
DAEMON=$TMP/bin/${DAEMON##*/}
CTL=$TMP/bin/${CTL##*/}

# ---- 1. the peer, installed if missing --------------------------------------------------
if ! "$PY" -c 'import torch' 2>/dev/null; then
    echo "# installing python3-torch (the peer)"
    SUDO=
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq >/dev/null
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        python3-torch >/dev/null
    "$PY" -c 'import torch' || die "python3-torch did not install"
fi

# ---- 2. ours standalone ---------------------------------------------------------------
# median of the arguments (numbers), empty if none
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

# standalone CONF SUBSET THREADS CORETYPE LOG EPOCHS [BATCH]: RESULT = samples/s of the training-time line
standalone() {
    # shellcheck disable=SC2046
    env $(blas_env "$4") OPENBLAS_NUM_THREADS="$3" "$WORKER" $(threads_arg "$3") --standalone "$1" \
        --set data.subset="$2" --set data.validation=1000 \
        --set stop.max_epochs="$6" --set stop.target_accuracy=0 \
        --set tunables.batch_size.default="${7:-$BATCH}" --set tunables.lr.default=0.03 \
        --set tunables.momentum.default=0.9 >"$5" 2>&1 ||
        { tail -n 20 "$5" >&2 || true; die "mltuner-worker --standalone $1 failed"; }
    RESULT=$(sed -n 's/^# training time .* (\([0-9.]*\) samples\/s).*/\1/p' "$5" | tail -n 1)
    [ -n "$RESULT" ] || die "no training-time line from mltuner-worker in $5"
    # the header's last field: how it used the threads ("2 threads (batch slices)")
    HOW=$(sed -n 's/^# fmnist-[a-z]*: .*, \([^,]*thread[^,]*\)$/\1/p' "$5" | head -n 1)
}

declare -A OURS OURS_CFG SA_MED # SA_MED[model-coretype-threads]: the median
for model in mlp cnn; do
    if [ $model = mlp ]; then
        subset=$MLP_SUBSET reps=$MLP_REPEATS epochs=$MLP_EPOCHS
    else
        subset=$CNN_SUBSET reps=$CNN_REPEATS epochs=1
    fi
    best='' cfg=''
    for ct in $CORETYPES; do
        for threads in 2 1; do
            runs=()
            for ((r = 1; r <= reps; r++)); do
                standalone "$SRC/conf/jobs/fmnist-$model.conf" $subset $threads "$ct" \
                    "$TMP/sa-$model-$ct-$threads-$r.log" $epochs
                echo "# ours $model standalone, OPENBLAS_CORETYPE=$ct threads=$threads${HOW:+ ($HOW)}," \
                    "run $r: $RESULT samples/s"
                runs+=("$RESULT")
            done
            med=$(median "${runs[@]}")
            SA_MED[$model-$ct-$threads]=$med
            echo "# ours $model standalone, OPENBLAS_CORETYPE=$ct threads=$threads:" \
                "median $med samples/s"
            if greater "$med" "$best"; then
                best=$med cfg="$ct $threads"
            fi
        done
    done
    OURS[$model]=$best OURS_CFG[$model]=$cfg
done
set -- ${OURS_CFG[mlp]}
DAEMON_CORETYPE=$1

# ---- 3. the peer --------------------------------------------------------------------
declare -A PEER_SPS PEER_CFG
for model in mlp cnn; do
    "$PY" "$PEER" $model --coretypes "${CORETYPES// /,}" --repeats "$PEER_REPEATS" \
        >"$TMP/peer-$model.log" 2>&1 ||
        { tail -n 20 "$TMP/peer-$model.log" >&2 || true; die "torch_peer.py $model failed"; }
    sed -n 's/^config /# torch '$model': /p' "$TMP/peer-$model.log"
    line=$(grep '^best ' "$TMP/peer-$model.log") || die "torch_peer.py $model printed no best"
    PEER_SPS[$model]=${line##*samples_per_s=}
    PEER_CFG[$model]=$(echo "$line" | sed 's/^best //; s/ samples_per_s=.*//')
done

# ---- 4. ours through a daemon -------------------------------------------------------
"$DAEMON" --rank 0 --set n_servers=1 --bind tcp://127.0.0.1:0 \
    --endpoint-file "$TMP/endpoint" --set state_dir="$TMP" \
    --set control_bind=tcp://127.0.0.1:0 --set control_endpoint_file="$TMP/control" \
    2>"$TMP/daemon.log" &
DAEMON_PID=$!
PIDS+=("$DAEMON_PID")
for ((i = 0; i < 1000; i++)); do
    [ -s "$TMP/control" ] && break
    kill -0 "$DAEMON_PID" 2>/dev/null ||
        { tail -n 20 "$TMP/daemon.log" >&2 || true; die "mltunerd exited at start"; }
    sleep 0.01
done
[ -s "$TMP/control" ] || die "mltunerd wrote no control endpoint within 10 s"
CONTROL=$(head -n 1 "$TMP/control")

# progress_rate FILE BATCH: "clocks span_sps train_sps done" from a progress.jsonl
progress_rate() {
    awk -v B="$2" '
        /"event":"clock"/ {
            match($0, /"t":[0-9.]+/); t = substr($0, RSTART + 4, RLENGTH - 4) + 0
            if (++n == 1) first = t
            last = t
            if (seg) { T += t - prev; k++ }  # an interval with no test in it
            prev = t; seg = 1
        }
        /"event":"test"/ { seg = 0 }
        /"event":"end"/ && /"phase":"done"/ { done = 1 }
        END {
            if (n < 2 || last <= first || T <= 0) { print n, "-", "-", done + 0; exit }
            printf "%d %.1f %.1f %d\n", n, n * B / (last - first), k * B / T, done + 0
        }' "$1"
}

# daemon_job STALENESS THREADS RUN [BATCH]: runs one job; RESULT = "clocks span_sps train_sps"
daemon_job() {
    local s=$1 th=$2 bs=${4:-$BATCH} tag=s$1-t$2-r$3-b${4:-$BATCH} wpid
    local out=$TMP/job-$tag
    # shellcheck disable=SC2046
    env $(blas_env "$DAEMON_CORETYPE") OPENBLAS_NUM_THREADS="$th" \
        "$WORKER" $(threads_arg "$th") --coordinator "$CONTROL" --rank 0 \
        >"$TMP/worker-$tag.log" 2>&1 &
    wpid=$!
    PIDS+=("$wpid")
    timeout 300 "$CTL" -c "$CONTROL" --timeout 10 submit "$SRC/conf/jobs/fmnist-mlp.conf" \
        --out "$out" \
        --set tuner.logic=fixed --set workers=1 --set data.subset=$MLP_SUBSET \
        --set stop.max_epochs=$DAEMON_EPOCHS --set stop.target_accuracy=0 \
        --set tunables.staleness.default="$s" --set tunables.batch_size.default="$bs" \
        --set tunables.lr.default=0.03 --set tunables.momentum.default=0.9 \
        --wait >"$TMP/ctl-$tag.log" 2>&1 ||
        { tail -n 20 "$TMP/ctl-$tag.log" "$TMP/worker-$tag.log" "$TMP/daemon.log" >&2 || true
          die "the job (staleness $s) failed"; }
    for ((i = 0; i < 3000; i++)); do # the worker leaves on TASK_STOP
        kill -0 "$wpid" 2>/dev/null || break
        sleep 0.01
    done
    kill "$wpid" 2>/dev/null && echo "worker.sh: the worker did not leave after the job" >&2
    wait "$wpid" 2>/dev/null || true
    [ -r "$out/progress.jsonl" ] || die "no $out/progress.jsonl"
    set -- $(progress_rate "$out/progress.jsonl" "$bs")
    [ "${4:-0}" = 1 ] ||
        die "the job (staleness $s) did not end in phase done: $(tail -n 1 "$out/progress.jsonl")"
    [ "$2" != - ] || die "the job (staleness $s) has too few clock events to time ($1)"
    local want=$(((MLP_SUBSET + bs - 1) / bs * DAEMON_EPOCHS))
    [ "$1" = "$want" ] || echo "worker.sh: staleness $s: $1 clock events, expected $want" >&2
    RESULT="$1 $2 $3"
}

declare -A DMN_TRAIN DMN_SPAN DMN_CFG DMN_MED # DMN_MED[staleness-threads]: the median
B32_RUNS=()
declare -A SA_B # standalone samples/s at batch 32 and 128, one thread (interleaved with B32_RUNS)
for s in 0 3; do
    best='' bspan='' cfg=''
    for th in 2 1; do
        train=() span=()
        for ((r = 1; r <= DAEMON_REPEATS; r++)); do
            daemon_job $s $th $r
            set -- $RESULT
            echo "# ours mlp via mltunerd, staleness $s, worker OPENBLAS_CORETYPE=$DAEMON_CORETYPE" \
                "threads=$th, run $r: $1 clocks, $2 samples/s over the clock span," \
                "$3 samples/s training only"
            train+=("$3") span+=("$2")
            if [ "$s" = 0 ] && [ "$th" = 1 ]; then # batch 32, interleaved with these
                daemon_job 0 1 "$r" 32
                set -- $RESULT
                echo "# ours mlp via mltunerd, batch 32, staleness 0, threads=1, run $r:" \
                    "$1 clocks, $2 samples/s over the clock span, $3 samples/s training only"
                B32_RUNS+=("$3")
                # and the worker alone at both batches (what compute alone allows)
                for b in 32 128; do
                    standalone "$SRC/conf/jobs/fmnist-mlp.conf" $MLP_SUBSET 1 "$DAEMON_CORETYPE" \
                        "$TMP/sa-b$b-$r.log" $MLP_EPOCHS $b
                    SA_B[$b]="${SA_B[$b]:-} $RESULT"
                done
            fi
        done
        med=$(median "${train[@]}") mspan=$(median "${span[@]}")
        DMN_MED[$s-$th]=$med
        echo "# ours mlp via mltunerd, staleness $s, threads=$th: median $med" \
            "samples/s training only, $mspan over the clock span"
        if greater "$med" "$best"; then
            best=$med bspan=$mspan cfg="$th"
        fi
    done
    DMN_TRAIN[$s]=$best DMN_SPAN[$s]=$bspan DMN_CFG[$s]=$cfg
done

# ---- the table ------------------------------------------------------------------------
MLP_R=$(ratio "${OURS[mlp]}" "${PEER_SPS[mlp]}")
CNN_R=$(ratio "${OURS[cnn]}" "${PEER_SPS[cnn]}")
D0=$(ratio "${DMN_TRAIN[0]}" "${OURS[mlp]}")
D3=$(ratio "${DMN_TRAIN[3]}" "${OURS[mlp]}")
DBEST=$D0
greater "$D3" "$D0" && DBEST=$D3
# one compute thread each: the daemon job's best staleness at threads=1 against
# the standalone worker at threads=1 with the daemon's coretype
DMN_1T=${DMN_MED[0-1]}
greater "${DMN_MED[3-1]}" "$DMN_1T" && DMN_1T=${DMN_MED[3-1]}
SA_1T=${SA_MED[mlp-$DAEMON_CORETYPE-1]:-}
D1T=$(ratio "$DMN_1T" "$SA_1T")
B32=$(median "${B32_RUNS[@]}")
B32_R=$(ratio "$B32" "${DMN_MED[0-1]}")
# shellcheck disable=SC2086
SA32=$(median ${SA_B[32]}) SA128=$(median ${SA_B[128]})

row() { printf '%-54s %10s %10s %7s\n' "$@"; }
echo
echo "samples/s, batch $BATCH, $(nproc) cores; ratio = ours / peer (above 1: ours is faster)"
row what ours peer ratio
row "mlp: standalone vs torch" "${OURS[mlp]}" "${PEER_SPS[mlp]}" "$MLP_R"
row "cnn: standalone vs torch" "${OURS[cnn]}" "${PEER_SPS[cnn]}" "$CNN_R"
for s in 0 3; do
    row "mlp: daemon staleness $s (training only) vs standalone" \
        "${DMN_TRAIN[$s]}" "${OURS[mlp]}" "$(ratio "${DMN_TRAIN[$s]}" "${OURS[mlp]}")"
    row "mlp: daemon staleness $s (whole clock span) vs standalone" \
        "${DMN_SPAN[$s]}" "${OURS[mlp]}" "$(ratio "${DMN_SPAN[$s]}" "${OURS[mlp]}")"
done
row "mlp: daemon 1 thread vs standalone 1 thread" "$DMN_1T" "$SA_1T" "$D1T"
row "mlp: daemon batch 32 vs batch 128 (staleness 0, 1 thread)" "$B32" "${DMN_MED[0-1]}" "$B32_R"
row "mlp: standalone batch 32 vs batch 128 (1 thread)" "$SA32" "$SA128" "$(ratio "$SA32" "$SA128")"
echo "best configurations (coretype = OPENBLAS_CORETYPE, auto: unset):"
set -- ${OURS_CFG[mlp]}
echo "  ours mlp standalone: coretype=$1 threads=$2"
set -- ${OURS_CFG[cnn]}
echo "  ours cnn standalone: coretype=$1 threads=$2"
echo "  torch mlp: ${PEER_CFG[mlp]} (OPENBLAS_NUM_THREADS=1; jit=1: torch.jit.trace)"
echo "  torch cnn: ${PEER_CFG[cnn]} (OPENBLAS_NUM_THREADS=1; jit=1: torch.jit.trace)"
echo "  daemon worker: coretype=$DAEMON_CORETYPE; threads=${DMN_CFG[0]} at" \
    "staleness 0, ${DMN_CFG[3]} at staleness 3"
echo "mlp_vs_torch=$MLP_R cnn_vs_torch=$CNN_R daemon_vs_standalone=$DBEST" \
    "daemon_vs_standalone_1t=$D1T b32_vs_b128=$B32_R"
