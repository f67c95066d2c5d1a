"""harness.py - real mltunerd daemons on loopback for the Python tests, as
tests/integration/harness.c starts them: each binds tcp://127.0.0.1:0 and
writes the endpoint it got to a file in a temporary state_dir; the
coordinator's control endpoint goes to another file. Every process started
here gets SIGKILL when the test process dies (PR_SET_PDEATHSIG) and is
stopped (SIGTERM, then SIGKILL) by stop().

The binaries are $MLT_BUILD_ROOT/daemon/mltunerd etc. (meson test sets it),
else build/ in the source tree; the package is python/ in the source tree.
"""

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_ROOT = os.environ.get("MLT_SOURCE_ROOT") or os.path.dirname(os.path.dirname(HERE))
BUILD_ROOT = os.environ.get("MLT_BUILD_ROOT") or os.path.join(SOURCE_ROOT, "build")
sys.path.insert(0, os.path.join(SOURCE_ROOT, "python"))

_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def skip_without(*modules):
    """unittest.SkipTest naming the missing module(s), for the module level."""
    missing = []
    for m in modules:
        try:
            __import__(m)
        except ImportError:
            missing.append(m)
    if missing:
        raise unittest.SkipTest(
            "%s missing: install Debian's python3-%s and run with /usr/bin/python3"
            % (", ".join(missing), missing[0]))


def build_binary(rel):
    p = os.path.join(BUILD_ROOT, rel)
    if not os.access(p, os.X_OK):
        raise unittest.SkipTest("%s is not built (set MLT_BUILD_ROOT)" % p)
    return p


def _wait_file(path, proc, what, log, timeout=15.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if os.path.exists(path):
            with open(path) as f:
                s = f.read().strip()
            if s:
                return s
        if proc.poll() is not None:
            with open(log) as f:
                raise RuntimeError("%s exited at start (%d); its log:\n%s"
                                   % (what, proc.returncode, f.read()))
        time.sleep(0.01)
    raise RuntimeError("%s wrote no %s within %.0f s" % (what, path, timeout))


class Daemon:
    """One mltunerd (rank 0 of 1: shard and coordinator) in a temporary state_dir.
    extra: further --set values ("memory_limit=1G")."""

    def __init__(self, extra=()):
        self.bin = build_binary("daemon/mltunerd")
        self.dir = tempfile.mkdtemp(prefix="mlt-pytest-")
        self.log = os.path.join(self.dir, "daemon0.log")
        epf = os.path.join(self.dir, "endpoint0")
        ctlf = os.path.join(self.dir, "control0")
        argv = [self.bin, "--rank", "0", "--set", "n_servers=1", "--bind", "tcp://127.0.0.1:0",
                "--endpoint-file", epf, "--set", "state_dir=" + self.dir,
                "--set", "control_bind=tcp://127.0.0.1:0",
                "--set", "control_endpoint_file=" + ctlf]
        for e in extra:
            argv += ["--set", e]
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf,
                                         stderr=logf, preexec_fn=_die_with_parent)
        self.procs = []  # workers started by start()
        try:
            self.endpoint = _wait_file(epf, self.proc, "mltunerd", self.log)
            self.control = _wait_file(ctlf, self.proc, "mltunerd", self.log)
        except Exception:
            self.stop()
            raise

    def start(self, argv, log_name, env=None):
        """Starts a program (a worker) that dies with the test; its output in
        DIR/log_name. Returns the Popen."""
        with open(os.path.join(self.dir, log_name), "w") as logf:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                 preexec_fn=_die_with_parent, env=env)
        self.procs.append(p)
        return p

    def read(self, name):
        with open(os.path.join(self.dir, name)) as f:
            return f.read()

    def ctl(self, *args, timeout=300):
        """Runs mltunerctl -c CONTROL args...; returns (exit status, output)."""
        argv = [build_binary("daemon/mltunerctl"), "-c", self.control] + list(args)
        r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        return r.returncode, r.stdout

    def stop(self, keep_dir=False):
        """SIGTERM to every process started here and to the daemon; SIGKILL past
        20 s. Returns the daemon's exit status."""
        rc = None
        for p in self.procs + [self.proc]:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs + [self.proc]:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        rc = self.proc.returncode
        if not keep_dir and os.environ.get("MLT_KEEP_TEST_DIR") is None:
            shutil.rmtree(self.dir, ignore_errors=True)
        return rc
