"""test_session.py - mltuner.session and mltuner.worker against a real
mltunerd: two numpy-only workers (np_worker.py, softmax regression on seeded
synthetic data, model.type external) run a tuned job to its accuracy
target; the session's errors are MltunerError. Skipped without numpy or
without the worker session in libmltuner.
"""

import errno
import json
import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.skip_without("numpy")

from mltuner import MltunerError  # noqa: E402
from mltuner.data import Sampler, share_size  # noqa: E402
from mltuner.session import Session  # noqa: E402

JOB = os.path.join(harness.SOURCE_ROOT, "conf", "jobs", "fmnist-mlp.conf")
# a small tuned job on the worker's own model: chance is 0.33, the data allow ~0.82
JOB_SETS = ["model.type=external", "stop.target_accuracy=0.78", "stop.max_epochs=20",
            "checkpoint_interval_s=0", "tuner.warm_start=", "tuner.range_clocks=16",
            "tuner.min_trial_clocks=10"]


def progress(d, out="job"):
    with open(os.path.join(d.dir, out, "progress.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


class NumpyWorkerJob(unittest.TestCase):
    def test_two_numpy_workers_reach_target(self):
        self.run_job([])

    def test_staleness_2(self):
        """The same job at staleness 2 (not tuned): the workers' pulls may be
        2 clocks stale and their pushes are copied, not sent zero-copy."""
        out = self.run_job(["tunables.staleness.default=2", "tunables.staleness.tune=false"])
        self.assertRegex(out.splitlines()[-2], r" s 2\b")

    def run_job(self, extra_sets):
        d = harness.Daemon()
        try:
            ws = [d.start([sys.executable, os.path.join(harness.HERE, "np_worker.py"),
                           "--coordinator", d.control, "--rank", str(r)], "worker%d.log" % r)
                  for r in range(2)]
            args = ["submit", JOB, "--out", "job", "--wait"]
            for s in JOB_SETS + extra_sets:
                args += ["--set", s]
            rc, out = d.ctl(*args, timeout=240)
            self.assertEqual(rc, 0, "the job failed:\n%s\nworker0:\n%s\ndaemon:\n%s"
                             % (out, d.read("worker0.log"), d.read("daemon0.log")))
            self.assertIn("reached the target 0.78", out)
            for w in ws:
                self.assertEqual(w.wait(60), 0)
            log = d.read("daemon0.log")
            self.assertIn("worker 0 joined: numpy-softmax", log)
            self.assertIn("worker 1 joined: numpy-softmax", log)
            ev = progress(d)
            clocks = [e for e in ev if e["event"] == "clock"]
            tests = [e for e in ev if e["event"] == "test"]
            self.assertTrue(clocks and tests)
            # the first losses are those of the initial weights (near log 3),
            # the last test is over both workers' shares of 1000 samples
            self.assertLess(abs(clocks[0]["loss"] - 1.0986), 0.1, clocks[0])
            self.assertGreaterEqual(tests[-1]["test_accuracy"], 0.78)
            self.assertEqual(tests[-1]["test_count"], 1000)
            self.assertTrue(os.path.getsize(os.path.join(d.dir, "job", "decisions.jsonl")) > 0)
            for r in range(2):
                self.assertIn("job over: test accuracy", d.read("worker%d.log" % r))
            return out
        finally:
            d.stop()


class SessionErrors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()

    def test_calls_without_a_task(self):
        with Session(self.d.control, 0, program="errors-test") as s:
            self.assertIsNone(s.next(0.2))  # no job submitted: no task
            with self.assertRaises(MltunerError) as cm:
                s.done()
            self.assertEqual(cm.exception.errno, errno.EINVAL)
            self.assertIn("no task is open", cm.exception.text)
            with self.assertRaises(MltunerError) as cm:
                s.report_clock(1, 0.5)
            self.assertEqual(cm.exception.errno, errno.EINVAL)
            self.assertIsNone(s.client)
            s.leave()
            with self.assertRaises(MltunerError) as cm:
                s.next(0.1)
            self.assertEqual(cm.exception.errno, errno.ENOTCONN)

    def test_bad_program_name(self):
        with self.assertRaises(MltunerError) as cm:
            Session(self.d.control, 0, program="no spaces allowed")
        self.assertIn("program", cm.exception.text)


class SamplerTest(unittest.TestCase):
    def test_shares_and_seek(self):
        self.assertEqual([share_size(10, k, 3) for k in range(3)], [4, 3, 3])
        a, b = Sampler(10, 1, 3, seed=5), Sampler(10, 1, 3, seed=5)
        seen = [int(i) for _ in range(3) for i in a.next_batch(1)]
        self.assertEqual(sorted(seen), [1, 4, 7])  # one epoch of share 1: each once
        self.assertAlmostEqual(a.epoch(), 1.0)
        nxt = list(a.next_batch(2))
        b.seek(1.0)
        self.assertEqual(list(b.next_batch(2)), nxt)  # a seek lands on the same data
        with self.assertRaises(ValueError):
            Sampler(10, 3, 3, seed=0)


if __name__ == "__main__":
    unittest.main()
