"""test_torch.py - the PyTorch layer (mltuner.pytorch) and the example
examples/torch_fmnist.py: a pull writes into the module's own parameter
memory and a push reads param.grad's memory (no copies); the example runs as
a tuned job of 2 workers through scripts/run-local --worker-cmd on a subset
of Fashion-MNIST and reaches 80% test accuracy. Skipped without torch
(Debian: python3-torch) or without the data set (dataset-fashion-mnist).
"""

import json
import os
import subprocess
import sys
import tempfile
import shutil
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

harness.skip_without("numpy", "torch")
import numpy as np  # noqa: E402
import torch  # noqa: E402

from mltuner import BRANCH_TRAIN, Client, Tunables  # noqa: E402
from mltuner.pytorch import TorchModel, classifier_eval, tensor_batches  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def small_model(net=None):
    torch.manual_seed(0)
    net = net or torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(),
                                     torch.nn.Linear(3, 2))
    x = torch.arange(32, dtype=torch.float32).reshape(8, 4) / 32
    y = torch.tensor([0, 1] * 4)
    return TorchModel(net, tensor_batches(x, y, seed=1), torch.nn.functional.cross_entropy,
                      classifier_eval(((x, y), (x, y))), train_size=8)


class ZeroCopy(unittest.TestCase):
    def test_tables_are_the_parameters_memory(self):
        m = small_model()
        self.assertTrue(m.zero_copy)
        self.assertEqual([n for n, _ in m.tables], ["0.weight", "0.bias", "2.weight", "2.bias"])
        self.assertEqual([s for _, s in m.tables], [12, 3, 6, 2])
        for a, (_, p) in zip(m.params, m.named):
            self.assertEqual(a.ctypes.data, p.data_ptr())
        m.load(type("T", (), {"share": 0, "share_count": 1})())
        loss, correct, n, grads = m.step(4)
        self.assertEqual(n, 4)
        for g, (_, p) in zip(grads, m.named):
            self.assertEqual(g.ctypes.data, p.grad.data_ptr())

    def test_non_contiguous_parameter_is_copied(self):
        net = torch.nn.Linear(4, 3)
        net.weight = torch.nn.Parameter(torch.zeros(4, 3).t())  # a transposed view
        m = small_model(torch.nn.Sequential(net))
        self.assertFalse(m.zero_copy)
        self.assertEqual(m.copied, [0])
        # a pulled table reaches the parameter (in its logical row-major
        # order) before a step, and its gradient comes back in that order
        m.params[0][:] = np.arange(12, dtype=np.float32)
        m.load(type("T", (), {"share": 0, "share_count": 1})())
        _, _, _, grads = m.step(4)
        np.testing.assert_array_equal(net.weight.detach().numpy().ravel(), np.arange(12))
        np.testing.assert_array_equal(grads[0], net.weight.grad.numpy().ravel())
        m.init(3)  # INIT: the module's weights back out into the table
        np.testing.assert_array_equal(m.params[0], net.weight.detach().numpy().ravel())

    def test_pull_writes_module_and_push_moves_it(self):
        """Through a real mltunerd: values written to the branch appear in the
        module's weights after a pull; one step's gradients pushed at lr 1
        move the weights by exactly -grad (to float32 rounding)."""
        d = harness.Daemon()
        try:
            m = small_model()
            m.load(type("T", (), {"share": 0, "share_count": 1})())
            with Client([d.endpoint], 0) as c:
                c.register("py-torch", m.tables, n_workers=1, rule="sgd")
                c.branch_create(1, BRANCH_TRAIN, Tunables(lr=1.0, momentum=0.0, staleness=0))
                want = [np.arange(s, dtype=np.float32) - 3 for _, s in m.tables]
                for k, w in enumerate(want):
                    c.write(1, k, w)
                c.pull(1, 0, m.params)
                np.testing.assert_array_equal(m.net[0].weight.detach().numpy().ravel(), want[0])
                np.testing.assert_array_equal(m.net[2].bias.detach().numpy(), want[3])
                _, _, _, grads = m.step(8)
                g = [x.copy() for x in grads]
                for k, x in enumerate(grads):
                    c.push(1, k, x)
                c.clock(1, 1)
                c.pull(1, 1, m.params)
                for k in range(4):
                    np.testing.assert_allclose(m.params[k], want[k] - g[k], rtol=0, atol=1e-6)
                self.assertTrue(any(np.abs(x).max() > 0 for x in g))
        finally:
            d.stop()


@unittest.skipUnless(os.path.exists(FMNIST), "Fashion-MNIST is not installed "
                     "(Debian: dataset-fashion-mnist)")
class TorchExampleJob(unittest.TestCase):
    def test_example_two_workers_reach_80_percent(self):
        out = tempfile.mkdtemp(prefix="mlt-pytest-torch-")
        try:
            env = dict(os.environ, BUILD_DIR=harness.BUILD_ROOT)
            cmd = [os.path.join(harness.SOURCE_ROOT, "scripts", "run-local"),
                   os.path.join(harness.SOURCE_ROOT, "conf", "jobs", "fmnist-mlp.conf"),
                   "--out", out, "--quiet",
                   "--worker-cmd", "%s %s" % (sys.executable, os.path.join(
                       harness.SOURCE_ROOT, "examples", "torch_fmnist.py")),
                   "--set", "model.type=external", "--set", "data.subset=10000",
                   "--set", "stop.target_accuracy=0.8", "--set", "stop.max_epochs=10",
                   "--set", "checkpoint_interval_s=0", "--set", "tuner.warm_start="]
            r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True, timeout=280)

            def log(name):
                p = os.path.join(out, "logs", name)
                return open(p).read() if os.path.exists(p) else "(no %s)" % name

            self.assertEqual(r.returncode, 0, "%s\n%s\n%s" % (r.stdout, log("mltunerctl.log"),
                                                              log("worker0.log")))
            with open(os.path.join(out, "progress.jsonl")) as f:
                ev = [json.loads(line) for line in f if line.strip()]
            end = [e for e in ev if e["event"] == "end"][-1]
            self.assertEqual(end["phase"], "done", end)
            self.assertGreaterEqual(end["test_accuracy"], 0.8)
            self.assertTrue(os.path.getsize(os.path.join(out, "decisions.jsonl")) > 0)
            self.assertIn("worker 0 joined: torch-fmnist", log("mltunerd.log"))
            for k in range(2):
                self.assertIn("job over: test accuracy", log("worker%d.log" % k))
        finally:
            shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
