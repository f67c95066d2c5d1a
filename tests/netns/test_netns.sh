#!/usr/bin/env bash
# tests/netns/test_netns.sh - mltuner across hosts, CurveZMQ on, in network
# namespaces this test makes: two daemon hosts (d0: rank 0, the coordinator,
# and d1: rank 1), two worker hosts (w0, w1) and an intruder (x), each a
# namespace with one veth link to a bridge in a sixth ("sw"), on 10.77.0.0/24.
# The daemons bind their host's address (not loopback: allowed only because
# they have keys; no allow_insecure). The job's keys are made with mltunerctl
# keygen: the daemons' pair, one pair for the workers and mltunerctl (in the
# allow-list), and a stranger's pair (not in it).
#
# Checked, in order:
#   1. a synthetic matrix-factorisation job (2 workers, 2 shards) submitted from
#      w0 with the workers' key starts training;
#   2. d1's link is cut (ip link set down) mid-job for about 5 s, during which
#   3. from x: mltunerctl without a key and with the stranger's key gets no
#      answer (status, stop), and d0 logs a refusal for each (the keyless one
#      naming its endpoint, the stranger naming its key and address); and the
#      job is still training (not failed) at the end of the cut;
#   4. the link restored, ZeroMQ's TCP connections hold (TCP retransmits,
#      nothing resets them) and the job still ends "done", its progress.jsonl
#      ending with phase done;
#   5. both daemons stop on SIGTERM.
# Everything (processes, namespaces, files) is removed on any exit (trap).
# Needs root and `ip netns`: exits 77 (skipped) without them. Bounded: the
# job's wait is capped at 60 s and the whole test at 90 s (meson's timeout).
set -uo pipefail

skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "not root (network namespaces need CAP_SYS_ADMIN)"
command -v ip >/dev/null || skip "no ip command (iproute2)"
B="${MLT_BUILD_ROOT:?MLT_BUILD_ROOT is not set}"
S="${MLT_SOURCE_ROOT:?MLT_SOURCE_ROOT is not set}"
for b in daemon/mltunerd daemon/mltunerctl worker/mltuner-worker; do
    [ -x "$B/$b" ] || { echo "FAIL: $B/$b is not built"; exit 1; }
done

id="mlt$$"
tmp=$(mktemp -d /tmp/mlt-netns-XXXXXX)
pids=()
made=()
failures=0
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

cleanup() {
    trap - EXIT INT TERM
    local p
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for _ in $(seq 50); do
        local alive=0
        for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive -eq 0 ] && break
        sleep 0.1
    done
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    for n in "${made[@]}"; do ip netns del "$n" 2>/dev/null; done
    [ -n "${MLT_KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

ns() { echo "$id-$1"; }
in_ns() { local n=$1; shift; ip netns exec "$(ns "$n")" "$@"; }
# start_in NS LOG CMD...: CMD in the background in NS, its own pid (ip netns
# exec may fork, so $! would be ip's) appended to pids
start_in() {
    local n=$1 log=$2 pf="$tmp/pid.$RANDOM$RANDOM"
    shift 2
    in_ns "$n" bash -c 'echo $$ >"$0"; exec "$@"' "$pf" "$@" 2>"$log" &
    for _ in $(seq 50); do [ -s "$pf" ] && break; sleep 0.05; done
    [ -s "$pf" ] || { fail "cannot start $1 in $n"; exit 1; }
    pids+=("$(cat "$pf")")
}

# ---- the network ---------------------------------------------------------------
ip netns add "$(ns sw)" 2>"$tmp/netns.err" || skip "ip netns add failed: $(cat "$tmp/netns.err")"
made+=("$(ns sw)")
ip -n "$(ns sw)" link add br0 type bridge || skip "no bridge support in this kernel"
ip -n "$(ns sw)" link set br0 up
declare -A addr=([d0]=10.77.0.1 [d1]=10.77.0.2 [w0]=10.77.0.11 [w1]=10.77.0.12 [x]=10.77.0.66)
for h in d0 d1 w0 w1 x; do
    ip netns add "$(ns "$h")" || { fail "ip netns add $(ns "$h")"; exit 1; }
    made+=("$(ns "$h")")
    ip -n "$(ns sw)" link add "v-$h" type veth peer name eth0 netns "$(ns "$h")" ||
        skip "cannot make a veth pair across namespaces"
    ip -n "$(ns sw)" link set "v-$h" master br0 up
    ip -n "$(ns "$h")" addr add "${addr[$h]}/24" dev eth0
    ip -n "$(ns "$h")" link set eth0 up
    ip -n "$(ns "$h")" link set lo up
done
ok "5 hosts on a bridge in $(ns sw)"

# ---- keys ------------------------------------------------------------------------
k="$tmp/keys"
mkdir -m 700 "$k"
for n in server workers stranger; do
    "$B/daemon/mltunerctl" keygen "$n" --dir "$k" >/dev/null || { fail "keygen $n"; exit 1; }
done
echo "$(grep -v '^#' "$k/workers.pub") workers" >"$k/authorized_keys"
keys=(--key "$k/workers.key" --server-key "$k/server.pub")

# ---- the daemons -----------------------------------------------------------------
servers="tcp://${addr[d0]}:7100,tcp://${addr[d1]}:7101"
control="tcp://${addr[d0]}:7099"
for r in 0 1; do
    mkdir -p "$tmp/d$r"
    extra=()
    [ $r -eq 0 ] && extra=(--set control_bind="$control")
    [ $r -eq 1 ] && extra=(--set control_bind=)
    start_in "d$r" "$tmp/d$r.log" "$B/daemon/mltunerd" --rank "$r" --set servers="$servers" \
        --set state_dir="$tmp/d$r" --set endpoint_file="$tmp/d$r/endpoint" \
        --set curve_key="$k/server.key" --set curve_authorized_keys="$k/authorized_keys" \
        "${extra[@]}"
done
for r in 0 1; do
    for _ in $(seq 100); do [ -s "$tmp/d$r/endpoint" ] && break; sleep 0.1; done
    [ -s "$tmp/d$r/endpoint" ] || { fail "mltunerd rank $r did not start: $(tail -3 "$tmp/d$r.log")"; exit 1; }
done
reach=0
for _ in $(seq 50); do
    in_ns w1 timeout 1 bash -c "exec 3<>/dev/tcp/${addr[d1]}/7101" 2>/dev/null && { reach=1; break; }
    sleep 0.1
done
[ $reach -eq 1 ] && ok "w1 reaches d1's shard port over the bridge" ||
    { fail "w1 cannot reach ${addr[d1]}:7101"; exit 1; }
grep -q "CurveZMQ on" "$tmp/d0.log" && grep -q "CurveZMQ on" "$tmp/d1.log" &&
    ok "both daemons listen beyond loopback with CurveZMQ (no allow_insecure)" ||
    fail "the daemons did not say CurveZMQ on"

# ---- the workers and the job -------------------------------------------------------
for w in 0 1; do
    start_in "w$w" "$tmp/w$w.log" "$B/worker/mltuner-worker" --coordinator "$control" \
        --rank "$w" "${keys[@]}"
done
ctl() { local h=$1; shift; in_ns "$h" "$B/daemon/mltunerctl" -c "$control" "$@"; }
# The coordinator tests (forks, then frees) every epoch, and a fork or free sent to d1
# just before the cut waits for the link like the workers' requests do, its control
# endpoint with it: epochs of 1M ratings make that window a small part of the run
# (with 200K, #15's faster clocks put it under the cut in 2 of 7 runs on a loaded host).
ctl w0 "${keys[@]}" submit "$S/conf/jobs/mf-synth.conf" \
    --set data.synthetic.users=2000 --set data.synthetic.items=1000 \
    --set data.synthetic.ratings=1M --set tuner.logic=fixed --set stop.max_epochs=20 \
    --set stop.target_rmse=0 >"$tmp/submit.out" 2>&1 &&
    ok "w0 submitted the job with the workers' key" || fail "submit from w0: $(cat "$tmp/submit.out")"
phase=""
for _ in $(seq 300); do
    phase=$(ctl w0 "${keys[@]}" --timeout 2 status 2>/dev/null | awk '$1 == "phase:" { print $2 }')
    [ "$phase" = training ] || [ "$phase" = testing ] || [ "$phase" = done ] && break
    sleep 0.1
done
[ "$phase" = training ] || [ "$phase" = testing ] &&
    ok "the job trains on 2 shards across hosts (phase $phase)" ||
    fail "the job did not start training (phase '$phase'); d0: $(tail -3 "$tmp/d0.log")"

# ---- a link cut mid-job ------------------------------------------------------------
st=$(ctl w0 "${keys[@]}" --timeout 2 status 2>/dev/null)
phase=$(echo "$st" | awk '$1 == "phase:" { print $2 }')
clock0=$(echo "$st" | sed -n 's/.*(clock \([0-9]*\)).*/\1/p')
[ "$phase" = training ] || [ "$phase" = testing ] ||
    fail "the job is no longer running before the cut (phase '$phase'): make it longer"
ip -n "$(ns d1)" link set eth0 down && ok "d1's link cut while the job is $phase (clock ${clock0:-?})" ||
    fail "cannot cut d1's link"
cut_at=$SECONDS
# ---- the intruder ------------------------------------------------------------------
out=$(ctl x --timeout 1.5 status 2>&1) && fail "x without a key got an answer: $out" ||
    ok "x without a key: no answer to status"
out=$(ctl x --timeout 1.5 stop 2>&1) && fail "x without a key stopped the job: $out" ||
    ok "x without a key: no answer to stop"
out=$(ctl x --key "$k/stranger.key" --server-key "$k/server.pub" --timeout 1.5 stop 2>&1) &&
    fail "x with the stranger's key got an answer: $out" ||
    ok "x with a key not in the allow-list: no answer to stop"
stranger=$(grep -v '^#' "$k/stranger.pub")
for _ in $(seq 30); do
    grep -q "control: refused a peer on" "$tmp/d0.log" &&
        grep -qF "refused a peer at ${addr[x]} with CurveZMQ key $stranger" "$tmp/d0.log" && break
    sleep 0.1
done
grep -q "control: refused a peer on" "$tmp/d0.log" &&
    ok "d0 logged the keyless peer: $(grep -m1 'control: refused a peer on' "$tmp/d0.log" | cut -c1-160)" ||
    fail "d0 logged nothing for the keyless peer"
grep -qF "refused a peer at ${addr[x]} with CurveZMQ key $stranger" "$tmp/d0.log" &&
    ok "d0 logged the stranger's key and address" ||
    fail "d0 did not log the stranger's key with ${addr[x]}"

sleep 1 # the cut lasts the intruder's tries and this: about 5 s
out=$(ctl w0 "${keys[@]}" --timeout 2 status 2>&1)
echo "$out" | grep -q "phase: *\(training\|testing\)" &&
    ok "at the end of the cut the job is still $(echo "$out" | awk '$1 == "phase:" { print $2 }') (not failed), at clock $(echo "$out" | sed -n 's/.*(clock \([0-9]*\)).*/\1/p')" ||
    fail "during the cut: $(echo "$out" | head -3)"
SECONDS_CUT=$((SECONDS - cut_at))
ip -n "$(ns d1)" link set eth0 up && ok "d1's link restored after ${SECONDS_CUT:-?} s" || fail "cannot restore d1's link"
if timeout 60 ip netns exec "$(ns w0)" "$B/daemon/mltunerctl" -c "$control" "${keys[@]}" \
    --timeout 5 wait >"$tmp/wait.out" 2>&1; then
    ok "the job finished after the cut: $(tail -1 "$tmp/wait.out")"
else
    fail "the job did not finish after the cut (exit $?): $(tail -3 "$tmp/wait.out"); d0: $(tail -3 "$tmp/d0.log")"
fi
prog=$(find "$tmp/d0" -name progress.jsonl | head -1)
[ -n "$prog" ] && tail -1 "$prog" | grep -q '"event":"end","phase":"done"' &&
    ok "progress.jsonl ends with phase done" || fail "progress.jsonl does not end with done (${prog:-none})"

# ---- stop ------------------------------------------------------------------------
# (not our children: ip netns exec ran them; their logs tell how they ended)
for p in "${pids[@]:0:2}"; do kill -TERM "$p"; done
for r in 0 1; do
    for _ in $(seq 100); do kill -0 "${pids[r]}" 2>/dev/null || break; sleep 0.1; done
    ! kill -0 "${pids[r]}" 2>/dev/null && grep -q "shutting down" "$tmp/d$r.log" &&
        ok "mltunerd rank $r stopped on SIGTERM" || fail "mltunerd rank $r did not stop on SIGTERM"
done
echo "$failures failure(s)"
[ $failures -eq 0 ]
