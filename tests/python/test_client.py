"""test_client.py - the low-level layer (mltuner.Client) against a real mltunerd
on loopback: exact values through pull/push/write, bounded staleness (a pull
parks until the slow worker clocks), errors as MltunerError with the
library's text and errno, zero-copy buffers, status. Runs under pytest or
`/usr/bin/python3 -m unittest` (from tests/python); skipped without numpy.
"""

import errno
import os
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.skip_without("numpy")
import numpy as np  # noqa: E402

import mltuner  # noqa: E402
from mltuner import BRANCH_TEST, BRANCH_TRAIN, Client, MltunerError, Tunables  # noqa: E402

TABLES = [("w", 5), ("b", 3)]


class ClientTest(unittest.TestCase):
    """One daemon for the class; each test registers its own job after ending
    the one before."""

    @classmethod
    def setUpClass(cls):
        cls.d = harness.Daemon()

    @classmethod
    def tearDownClass(cls):
        rc = cls.d.stop()
        assert rc == 0, "mltunerd exited with %s" % rc

    def setUp(self):
        self.clients = []

    def tearDown(self):
        if self.clients:
            try:
                self.clients[0].job_end()
            except MltunerError:
                pass
        for c in self.clients:
            c.close()

    def connect(self, worker, n_workers=2, tables=TABLES, rule="sgd"):
        c = Client([self.d.endpoint], worker)
        c.set_timeout(60)
        c.register("py-" + self._testMethodName, tables, n_workers=n_workers, rule=rule)
        self.clients.append(c)
        return c

    # ---- values -----------------------------------------------------------------

    def test_push_pull_exact(self):
        """Two workers push integer gradients at lr 1, momentum 0, staleness 0:
        each pull holds init - (sum of the pushes) exactly, clock by clock."""
        a, b = self.connect(0), self.connect(1)
        self.assertEqual(a.table_sizes, [5, 3])
        a.branch_create(1, BRANCH_TRAIN, Tunables(lr=1.0, momentum=0.0, staleness=0))
        init = [np.arange(5, dtype=np.float32) * 10, np.array([7, -7, 100], dtype=np.float32)]
        for t, v in enumerate(init):
            a.write(1, t, v)
        want = [v.copy() for v in init]
        pa, pb = a.new_tables(), b.new_tables()
        for clock in range(3):
            for c, p in ((a, pa), (b, pb)):
                c.pull(1, clock, p)
                for t in range(2):
                    np.testing.assert_array_equal(p[t], want[t], "clock %d table %d" % (clock, t))
            for k, c in enumerate((a, b)):
                # integers: every sum is exact on any machine
                g = [np.full(5, k + 1, np.float32) * (clock + 1),
                     np.array([1, 2, 3], np.float32) * (k - 1)]
                for t in range(2):
                    c.push(1, t, g[t])
                    want[t] -= g[t]
                c.clock(1, clock + 1)
        a.pull(1, 3, pa)
        np.testing.assert_array_equal(pa[0], init[0] - 9 * np.ones(5, np.float32) * 2)
        np.testing.assert_array_equal(pa[1], init[1] - 3 * np.array([-1, -2, -3], np.float32))
        self.assertEqual(a.pull_min_clock(1), 3)

    def test_fork_copies_parameters(self):
        """A forked branch starts from its parent's values and then moves alone."""
        a = self.connect(0, n_workers=1)
        a.branch_create(1, BRANCH_TRAIN, Tunables(lr=0.5, momentum=0.0, staleness=0))
        a.write(1, 0, np.full(5, 4, np.float32))
        a.write(1, 1, np.full(3, -2, np.float32))
        a.branch_fork(2, 1, BRANCH_TRAIN, Tunables(lr=2.0))
        a.push(2, 0, np.ones(5, np.float32))
        a.push(2, 1, np.ones(3, np.float32))
        a.clock(2, 1)
        p1, p2 = a.new_tables(), a.new_tables()
        a.pull(1, 0, p1)
        a.pull(2, 1, p2)
        np.testing.assert_array_equal(p1[0], np.full(5, 4, np.float32))
        np.testing.assert_array_equal(p2[0], np.full(5, 2, np.float32))  # 4 - 2.0 * 1
        np.testing.assert_array_equal(p2[1], np.full(3, -4, np.float32))
        st = a.status(0)
        self.assertEqual(st.job, "py-test_fork_copies_parameters")
        br = {b.id: b for b in st.branches}
        self.assertEqual(br[2].parent, 1)
        self.assertEqual(br[2].tunables.lr, 2.0)
        self.assertEqual(br[1].tunables.lr, 0.5)
        a.branch_free(2)
        self.assertNotIn(2, [b.id for b in a.status(0).branches])

    # ---- staleness --------------------------------------------------------------

    def test_staleness_parks_until_slow_worker_clocks(self):
        """Staleness 1: the fast worker's pull for clock 2 needs min_clock >= 1,
        so it waits (parked on the shard) until the slow worker finishes clock
        1, and then holds the slow worker's update."""
        fast, slow = self.connect(0), self.connect(1)
        fast.branch_create(3, BRANCH_TRAIN, Tunables(lr=1.0, momentum=0.0, staleness=1))
        fast.write(3, 0, np.zeros(5, np.float32))
        fast.write(3, 1, np.zeros(3, np.float32))
        p = fast.new_tables()
        fast.pull(3, 0, p)
        fast.push(3, 0, np.ones(5, np.float32))
        fast.push(3, 1, np.ones(3, np.float32))
        fast.clock(3, 1)
        fast.pull(3, 1, p)  # needs min_clock >= 0: at once
        fast.push(3, 0, np.ones(5, np.float32))
        fast.push(3, 1, np.ones(3, np.float32))
        fast.clock(3, 2)
        got = {}

        def pull_clock2():
            try:
                fast.pull(3, 2, p)
                got["min_clock"] = fast.pull_min_clock(3)
            except Exception as e:  # reported below
                got["error"] = e

        th = threading.Thread(target=pull_clock2)
        th.start()
        # the pull waits on the shard while the slow worker is at clock 0
        watcher = Client([self.d.endpoint], 7)
        self.clients.append(watcher)
        end = time.monotonic() + 30
        while watcher.status(0).parked == 0 and time.monotonic() < end and th.is_alive():
            time.sleep(0.02)
        self.assertTrue(th.is_alive(), "the pull for clock 2 returned before min_clock reached 1: %r"
                        % got)
        self.assertGreaterEqual(watcher.status(0).parked, 1)
        slow.push(3, 0, np.full(5, 10, np.float32))
        slow.push(3, 1, np.full(3, 10, np.float32))
        slow.clock(3, 1)
        th.join(60)
        self.assertFalse(th.is_alive(), "the parked pull was not answered within 60 s")
        self.assertNotIn("error", got)
        self.assertGreaterEqual(got["min_clock"], 1)
        # the slow worker's clock 1 (-10) is in; the fast one's first (-1) too
        self.assertTrue(np.all(p[0] <= -11), p[0])

    # ---- errors -----------------------------------------------------------------

    def test_errors_are_exceptions(self):
        a = self.connect(0, n_workers=1)
        a.branch_create(1, BRANCH_TRAIN, Tunables(lr=0.1, staleness=0))
        with self.assertRaises(MltunerError) as cm:
            a.pull(42, 0, a.new_tables())
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.assertIn("unknown branch 42", str(cm.exception))
        self.assertEqual(cm.exception.call, "mlt_pull")
        self.assertIn("unknown branch 42", a.error())
        with self.assertRaises(MltunerError) as cm:
            a.branch_create(1)
        self.assertEqual(cm.exception.errno, errno.EEXIST)
        with self.assertRaises(MltunerError) as cm:
            a.branch_fork(5, 99, BRANCH_TEST)
        self.assertEqual(cm.exception.errno, errno.ENOENT)
        self.assertIn("99", cm.exception.text)
        # another job's spec while this one is served
        other = Client([self.d.endpoint], 0)
        self.clients.append(other)
        with self.assertRaises(MltunerError) as cm:
            other.register("py-other", [("w", 6)])
        self.assertEqual(cm.exception.errno, errno.EBUSY)
        # a non-finite gradient is refused by the shard, reported by a later call
        a.push(1, 0, np.array([1, np.nan, 0, 0, 0], np.float32))
        with self.assertRaises(MltunerError) as cm:
            a.clock(1, 1)
        self.assertEqual(cm.exception.errno, errno.EDOM)
        self.assertTrue([b for b in a.status(0).branches if b.id == 1][0].diverged)

    def test_wrong_buffers_refused_without_copy(self):
        a = self.connect(0, n_workers=1)
        a.branch_create(1, BRANCH_TRAIN)
        with self.assertRaisesRegex(ValueError, "4 values, but the table holds 5"):
            a.write(1, 0, np.zeros(4, np.float32))
        with self.assertRaisesRegex(TypeError, "float32 is needed"):
            a.push(1, 0, np.zeros(5, np.float64))
        with self.assertRaisesRegex(ValueError, "C-contiguous"):
            a.push(1, 0, np.zeros(10, np.float32)[::2])
        with self.assertRaisesRegex(ValueError, "2 arrays for 2 tables|3 arrays for 2 tables"):
            a.pull(1, 0, a.new_tables() + [np.zeros(1, np.float32)])
        ro = np.zeros(5, np.float32)
        ro.flags.writeable = False
        with self.assertRaisesRegex(ValueError, "read-only"):
            a.pull(1, 0, [ro, np.zeros(3, np.float32)])
        with self.assertRaises(IndexError):
            a.push(1, 2, np.zeros(3, np.float32))

    def test_zero_copy_pull_into_views(self):
        """pull writes into the caller's memory: views into one flat buffer see
        the values, and the arrays are the same objects at the same address."""
        a = self.connect(0, n_workers=1)
        a.branch_create(1, BRANCH_TRAIN, Tunables(lr=1.0, momentum=0.0, staleness=0))
        a.write(1, 0, np.arange(5, dtype=np.float32))
        a.write(1, 1, np.array([5, 6, 7], np.float32))
        flat = np.zeros(8, np.float32)
        views = [flat[:5], flat[5:]]
        addr = [v.ctypes.data for v in views]
        a.pull(1, 0, views)
        np.testing.assert_array_equal(flat, np.arange(8, dtype=np.float32))
        self.assertEqual(addr, [v.ctypes.data for v in views])
        # the push reads a view of a bigger buffer in place, too
        grads = np.arange(8, dtype=np.float32)
        a.push(1, 0, grads[:5])
        a.push(1, 1, grads[5:])
        a.clock(1, 1)
        a.pull(1, 1, views)
        np.testing.assert_array_equal(flat, np.zeros(8, np.float32))


class LibraryTest(unittest.TestCase):
    def test_library_found_in_build_tree(self):
        p = mltuner.library_path()
        self.assertTrue(p.endswith("libmltuner.so"), p)

    def test_mltuner_lib_is_honoured(self):
        """MLTUNER_LIB names the library; a wrong one is an error naming it."""
        import subprocess
        code = "import mltuner; print(mltuner.library_path())"
        env = dict(os.environ, PYTHONPATH=os.path.join(harness.SOURCE_ROOT, "python"))
        env["MLTUNER_LIB"] = os.path.dirname(mltuner.library_path())
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertEqual(r.stdout.strip(), mltuner.library_path(), r.stderr)
        env["MLTUNER_LIB"] = "/nonexistent/libmltuner.so"
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("LibraryNotFound", r.stderr)
        self.assertIn("/nonexistent/libmltuner.so (missing)", r.stderr)

    def test_no_daemon_is_an_error(self):
        with self.assertRaises(MltunerError) as cm:
            Client(["tcp://127.0.0.1:1"], 0)
        self.assertIn("127.0.0.1:1", cm.exception.text)


if __name__ == "__main__":
    unittest.main()
