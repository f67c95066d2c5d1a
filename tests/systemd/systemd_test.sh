#!/bin/bash
# systemd_test.sh - the service side of mltuner, checked from outside.
#
#   systemd_test.sh install MESON   `meson install --destdir` puts the programs, both
#                                   units and the configuration where the units say
#   systemd_test.sh verify MESON    systemd-analyze verify accepts the installed units
#                                   (and rejects a broken copy); their hardening holds
#   systemd_test.sh notify yes|no   the real mltunerd sends STATUS= and READY=1 once it
#                                   serves and STOPPING=1 on SIGTERM, then exits 0
#                                   (no: built without libsystemd, skipped)
#
# Needs MLT_BUILD_ROOT and MLT_SOURCE_ROOT (tests/meson.build sets them).
# Exit 0 pass, 1 fail, 77 skip. Each run works in a temporary directory it
# removes unless it failed; MLT_TEST_KEEP=1 keeps it always.
set -u

mode="${1:?usage: systemd_test.sh install|verify MESON, or notify yes|no}"
build="${MLT_BUILD_ROOT:?MLT_BUILD_ROOT is not set}"
source_root="${MLT_SOURCE_ROOT:?MLT_SOURCE_ROOT is not set}"

tmp="$(mktemp -d /tmp/mlt-systemd-XXXXXX)" || exit 1
failed=0
daemon_pid=""
listener_pid=""

cleanup() {
    local rc=$?
    [ -n "$daemon_pid" ] && kill -KILL "$daemon_pid" 2>/dev/null
    [ -n "$listener_pid" ] && kill -TERM "$listener_pid" 2>/dev/null
    if { [ "$rc" -eq 0 ] || [ "$rc" -eq 77 ]; } && [ -z "${MLT_TEST_KEEP:-}" ]; then
        rm -rf "$tmp"
    else
        echo "# files kept in $tmp"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM # meson's timeout: clean up on the way out

fail() {
    echo "FAIL: $*"
    failed=1
}

# ---- meson install --------------------------------------------------------------

dest="$tmp/dest"

# Installs the build into $dest; returns non-zero (after saying why) on failure.
install_to_dest() {
    local meson="$1"
    if ! "$meson" install -C "$build" --destdir "$dest" --no-rebuild >"$tmp/install.log" 2>&1; then
        fail "meson install -C $build --destdir $dest --no-rebuild failed:"
        sed 's/^/    /' "$tmp/install.log"
        return 1
    fi
}

# The one installed file named $1 under a directory ending in $2, or nothing.
installed_unit() {
    find "$dest" -path "*/$2/$1" -type f
}

# The value of the first "Key=" line of unit file $2 (key $1).
unit_value() {
    sed -n "s/^$1=//p" "$2" | head -n 1
}

# The string value of "key = "value";" in libconfig file $2 (key $1).
conf_string() {
    sed -n "s/^$1 *= *\"\\(.*\\)\";.*/\\1/p" "$2" | head -n 1
}

check_install() {
    install_to_dest "$1" || return
    local unitdir="systemd/system"
    local d_unit w_unit
    d_unit="$(installed_unit mltunerd.service "$unitdir")"
    w_unit="$(installed_unit 'mltuner-worker@.service' "$unitdir")"
    [ -n "$d_unit" ] || fail "no mltunerd.service installed under */$unitdir"
    [ -n "$w_unit" ] || fail "no mltuner-worker@.service installed under */$unitdir"
    [ -n "$d_unit" ] && [ -n "$w_unit" ] || return

    # the daemon unit: ExecStart=SBINDIR/mltunerd --config CONFDIR/mltunerd.conf
    local exec d_bin conf_path
    exec="$(unit_value ExecStart "$d_unit")"
    read -r d_bin _ conf_path _ <<<"$exec"
    case "$exec" in
    /*/sbin/mltunerd\ --config\ /*) ;;
    *) fail "mltunerd.service: ExecStart is '$exec', not SBINDIR/mltunerd --config FILE" ;;
    esac
    [ -x "$dest$d_bin" ] || fail "mltunerd.service runs $d_bin, which is not installed ($dest$d_bin)"
    if [ ! -f "$dest$conf_path" ]; then
        fail "mltunerd.service reads $conf_path, which is not installed"
        return
    fi
    cmp -s "$dest$conf_path" "$source_root/conf/mltunerd.conf" ||
        fail "the installed $conf_path differs from conf/mltunerd.conf"
    local confdir
    confdir="$(dirname "$conf_path")"
    [ "$(basename "$confdir")" = mltuner ] || fail "the config is in $confdir, not in a mltuner/ directory"

    # the installed daemon runs and accepts the installed config (it loads the
    # file before it prints the defaults; a file it refuses exits 2)
    local out
    out="$("$dest$d_bin" --version 2>&1)" || fail "installed mltunerd --version failed: $out"
    case "$out" in mltunerd\ *) ;; *) fail "installed mltunerd --version printed '$out'" ;; esac
    "$dest$d_bin" --config "$dest$conf_path" --print-defaults >/dev/null 2>"$tmp/conf.err" ||
        fail "installed mltunerd refuses the installed config: $(cat "$tmp/conf.err")"

    # the unit's state directory is the config's state_dir
    local statedir state_dir
    statedir="$(unit_value StateDirectory "$d_unit")"
    state_dir="$(conf_string state_dir "$dest$conf_path")"
    [ -n "$statedir" ] || fail "mltunerd.service has no StateDirectory="
    [ "/var/lib/$statedir" = "$state_dir" ] ||
        fail "mltunerd.service makes /var/lib/$statedir writable, but state_dir is '$state_dir'"

    # the worker unit: ExecStart=BINDIR/mltuner-worker --coordinator ... --rank %i
    local w_bin envfile coordinator control_bind
    exec="$(unit_value ExecStart "$w_unit")"
    read -r w_bin _ <<<"$exec"
    case "$exec" in
    /*/bin/mltuner-worker\ --coordinator\ *\ --rank\ %i*) ;;
    *) fail "mltuner-worker@.service: ExecStart is '$exec', not BINDIR/mltuner-worker --coordinator EP --rank %i" ;;
    esac
    [ -x "$dest$w_bin" ] || fail "mltuner-worker@.service runs $w_bin, which is not installed"
    "$dest$w_bin" --help >/dev/null 2>&1 || fail "installed mltuner-worker --help failed"
    local ctl
    ctl="$(dirname "$w_bin")/mltunerctl"
    [ -x "$dest$ctl" ] || fail "mltunerctl is not installed next to mltuner-worker ($ctl)"
    envfile="$(unit_value EnvironmentFile "$w_unit")"
    [ "$envfile" = "-$confdir/worker.env" ] ||
        fail "mltuner-worker@.service reads EnvironmentFile=$envfile, not -$confdir/worker.env"
    [ -f "$dest$confdir/worker.env" ] || fail "$confdir/worker.env is not installed"
    grep -q '^Environment=CUDA_VISIBLE_DEVICES=%i$' "$w_unit" ||
        fail "mltuner-worker@.service does not give worker %i GPU %i (CUDA_VISIBLE_DEVICES=%i)"
    # the worker's default coordinator is the shipped config's control endpoint
    coordinator="$(sed -n 's/^Environment=MLTUNER_COORDINATOR=//p' "$w_unit")"
    control_bind="$(conf_string control_bind "$dest$conf_path")"
    [ -n "$coordinator" ] && [ "$coordinator" = "$control_bind" ] ||
        fail "the worker's default coordinator '$coordinator' is not mltunerd.conf's control_bind '$control_bind'"

    # every example job
    local job n=0
    for job in "$source_root"/conf/jobs/*.conf; do
        n=$((n + 1))
        cmp -s "$job" "$dest$confdir/jobs/$(basename "$job")" ||
            fail "conf/jobs/$(basename "$job") is not installed as $confdir/jobs/$(basename "$job")"
    done
    [ "$n" -gt 0 ] || fail "no conf/jobs/*.conf in $source_root"
    [ "$failed" -eq 0 ] && echo "ok: installed $d_bin, $w_bin, $ctl, $d_unit and $w_unit (under $dest), $conf_path, $n jobs"
}

# ---- systemd-analyze --------------------------------------------------------------

# Runs systemd-analyze verify on unit files "$@"; prints what it says and
# returns 1 if it failed or said anything about an mltuner unit (it only
# warns, with exit status 0, about an unknown key or a bad value).
verify_units() {
    local out rc=0
    out="$(systemd-analyze verify --man=no "$@" 2>&1)" || rc=$?
    [ -n "$out" ] && echo "$out" | sed 's/^/    systemd-analyze: /'
    [ "$rc" -eq 0 ] && ! echo "$out" | grep -q -e 'mltunerd\.service' -e 'mltuner-worker@'
}

check_verify() {
    if ! command -v systemd-analyze >/dev/null; then
        echo "SKIP: systemd-analyze is not installed"
        exit 77
    fi
    install_to_dest "$1" || return
    # The installed units, as they are but for ExecStart, which names the
    # binary under $dest (verify refuses a unit whose binary is missing).
    mkdir -p "$tmp/units" "$tmp/broken"
    local u src
    for u in mltunerd.service 'mltuner-worker@.service'; do
        src="$(installed_unit "$u" systemd/system)"
        if [ -z "$src" ]; then
            fail "$u is not installed under */systemd/system"
            return
        fi
        sed "s|^ExecStart=/|ExecStart=$dest/|" "$src" >"$tmp/units/$u"
        grep -q "^ExecStart=$dest/" "$tmp/units/$u" || fail "$u has no absolute ExecStart="
    done
    echo "# systemd-analyze verify $tmp/units/mltunerd.service $tmp/units/mltuner-worker@.service"
    verify_units "$tmp/units/mltunerd.service" "$tmp/units/mltuner-worker@.service" ||
        fail "systemd-analyze verify found problems in the installed units (above)"

    # the check can fail: a misspelt value and an unknown key are caught
    sed -e 's/^ProtectSystem=strict$/ProtectSystem=stricct/' \
        -e 's/^\[Service\]$/[Service]\nNoSuchDirective=yes/' \
        "$tmp/units/mltunerd.service" >"$tmp/broken/mltunerd.service"
    echo "# the same on a copy with ProtectSystem=stricct and NoSuchDirective=yes (must be refused)"
    if verify_units "$tmp/broken/mltunerd.service"; then
        fail "systemd-analyze verify accepted a unit with ProtectSystem=stricct; this check cannot fail"
    fi

    # the hardening, as systemd scores it: 0 is fully locked down, 10 not at
    # all (the daemon 1.8 and the worker 3.6 with systemd 252; the worker keeps
    # its devices and W+X memory for CUDA)
    if systemd-analyze --help 2>/dev/null | grep -q -- '--offline'; then
        local unit threshold
        for unit in mltunerd.service:25 'mltuner-worker@.service:45'; do
            threshold="${unit##*:}"
            unit="${unit%:*}"
            if ! systemd-analyze security --offline=yes --threshold="$threshold" \
                "$tmp/units/$unit" >"$tmp/security.out" 2>&1; then
                grep -e '✗' -e 'Overall' "$tmp/security.out" | sed 's/^/    /'
                fail "$unit: exposure above $((threshold / 10)).$((threshold % 10)) (above)"
            else
                echo "ok: $(grep -o 'Overall exposure level.*' "$tmp/security.out")"
            fi
        done
    else
        echo "# this systemd-analyze has no 'security --offline': exposure not checked"
    fi
    [ "$failed" -eq 0 ] && echo "ok: systemd-analyze verify accepts both installed units, refuses the broken copy"
}

# ---- sd_notify --------------------------------------------------------------------

# Waits up to $2 seconds for a line "$1" in the listener's output; 0 if it came.
wait_message() {
    local t
    for ((t = 0; t < $2 * 10; t++)); do
        grep -qx -- "$1" "$tmp/notify.out" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

check_notify() {
    if [ "$1" != yes ]; then
        echo "SKIP: mltunerd was built without libsystemd (meson -Dsystemd), it sends no notifications"
        exit 77
    fi
    local python=/usr/bin/python3
    [ -x "$python" ] || python="$(command -v python3)" || {
        echo "SKIP: no python3 for the notification socket"
        exit 77
    }
    local sock="$tmp/notify.sock" daemon="$build/daemon/mltunerd"
    [ -x "$daemon" ] || { fail "$daemon is not built"; return; }

    # the service manager's end: an AF_UNIX datagram socket; each field of
    # each message becomes a line of notify.out
    "$python" -c '
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(120)  # an orphaned listener goes away by itself
while True:
    msg = s.recv(4096).decode("utf-8", "replace")
    sys.stdout.write("".join(f + "\n" for f in msg.split("\n") if f))
    sys.stdout.flush()
' "$sock" >"$tmp/notify.out" 2>"$tmp/listener.err" &
    listener_pid=$!
    local t
    for ((t = 0; t < 100; t++)); do
        [ -S "$sock" ] && break
        sleep 0.1
    done
    [ -S "$sock" ] || { fail "the listener did not bind $sock: $(cat "$tmp/listener.err")"; return; }

    # a config like the integration harness's: loopback, ports the kernel picks
    mkdir -p "$tmp/state"
    cat >"$tmp/mltunerd.conf" <<EOF
bind = "tcp://127.0.0.1:0";
endpoint_file = "$tmp/endpoint";
control_bind = "tcp://127.0.0.1:0";
control_endpoint_file = "$tmp/control";
state_dir = "$tmp/state";
EOF
    NOTIFY_SOCKET="$sock" "$daemon" --config "$tmp/mltunerd.conf" 2>"$tmp/daemon.log" &
    daemon_pid=$!

    if ! wait_message READY=1 30; then
        fail "no READY=1 within 30 s; the daemon's log:"
        sed 's/^/    /' "$tmp/daemon.log"
        return
    fi
    echo "ok: READY=1 ($(grep '^STATUS=' "$tmp/notify.out"))"
    kill -0 "$daemon_pid" 2>/dev/null || fail "the daemon exited after READY=1"
    # ready means listening: both endpoint files are written before READY=1
    local ep=""
    [ -s "$tmp/endpoint" ] && ep="$(cat "$tmp/endpoint")"
    [ -n "$ep" ] || fail "READY=1 came before the endpoint file was written"
    [ -s "$tmp/control" ] || fail "READY=1 came before the coordinator was listening"
    grep -qx "STATUS=shard 0 of 1 serving on $ep" "$tmp/notify.out" ||
        fail "no STATUS=shard 0 of 1 serving on $ep (got: $(grep '^STATUS=' "$tmp/notify.out"))"
    grep -qx STOPPING=1 "$tmp/notify.out" && fail "STOPPING=1 before any signal"

    kill -TERM "$daemon_pid"
    local status=-1
    for ((t = 0; t < 300; t++)); do
        if ! kill -0 "$daemon_pid" 2>/dev/null; then
            wait "$daemon_pid"
            status=$?
            break
        fi
        sleep 0.1
    done
    if [ "$status" -lt 0 ]; then
        fail "the daemon ignored SIGTERM for 30 s"
        return
    fi
    daemon_pid=""
    [ "$status" -eq 0 ] || fail "the daemon exited with status $status after SIGTERM"
    if wait_message STOPPING=1 5; then
        echo "ok: STOPPING=1, exit status $status"
    else
        fail "no STOPPING=1 after SIGTERM"
    fi
    if [ "$failed" -ne 0 ]; then
        echo "# the notifications:"
        sed 's/^/    /' "$tmp/notify.out"
        echo "# the daemon's log:"
        sed 's/^/    /' "$tmp/daemon.log"
    fi
}

case "$mode" in
install) check_install "${2:?install needs the meson program}" ;;
verify) check_verify "${2:?verify needs the meson program}" ;;
notify) check_notify "${2:?notify needs yes or no (built with libsystemd)}" ;;
*)
    echo "systemd_test.sh: unknown mode '$mode'"
    exit 2
    ;;
esac
exit "$failed"
