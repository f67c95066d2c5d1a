#!/usr/bin/python3
"""np_worker.py - a worker written with numpy only (no torch): multinomial
logistic regression on seeded synthetic data (3 Gaussian blobs in 16
dimensions), through mltuner.worker.run_worker. For test_session.py, and a
small example of the model interface mltuner.worker documents.

    np_worker.py --coordinator ENDPOINT --rank N [--train N]
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.environ.get("MLT_SOURCE_ROOT") or
                                os.path.dirname(os.path.dirname(HERE)), "python"))

import numpy as np  # noqa: E402

from mltuner.data import Sampler, share_indices  # noqa: E402
from mltuner.session import EvalSums  # noqa: E402
from mltuner.worker import run_worker  # noqa: E402

DIM, CLASSES = 16, 3


class Softmax:
    """y = softmax(x W + b); W and b are the two tables."""

    def __init__(self, n_train):
        self.n_train = n_train
        self.tables = [("W", DIM * CLASSES), ("b", CLASSES)]
        self.params = [np.zeros(DIM * CLASSES, np.float32), np.zeros(CLASSES, np.float32)]
        self.grads = [np.zeros_like(p) for p in self.params]

    def load(self, task):
        rng = np.random.default_rng(task.seed)
        centers = rng.normal(0, 0.5, (CLASSES, DIM)).astype(np.float32)
        n = self.n_train + 2000
        y = rng.integers(0, CLASSES, n)
        x = (centers[y] + rng.normal(0, 1, (n, DIM))).astype(np.float32)
        self.x, self.y = x[:self.n_train], y[:self.n_train]
        self.sets = [(x[self.n_train:self.n_train + 1000], y[self.n_train:self.n_train + 1000]),
                     (x[self.n_train + 1000:], y[self.n_train + 1000:])]
        self.seed = task.seed
        self.set_share(task.share, task.share_count)
        return len(self.sampler), self.n_train

    def set_share(self, share, count):
        epoch = self.sampler.epoch() if hasattr(self, "sampler") else 0.0
        self.sampler = Sampler(self.n_train, share, count, self.seed)
        self.sampler.seek(epoch)
        self.share = (share, count)

    def init(self, seed):
        rng = np.random.default_rng(seed)
        self.params[0][:] = rng.normal(0, 0.01, self.params[0].size)
        self.params[1][:] = 0

    def seek(self, epochs):
        self.sampler.seek(epochs)

    def epoch(self):
        return self.sampler.epoch()

    def _forward(self, x):
        z = x @ self.params[0].reshape(DIM, CLASSES) + self.params[1]
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        return p

    def step(self, batch):
        i = self.sampler.next_batch(batch)
        x, y = self.x[i], self.y[i]
        p = self._forward(x)
        n = len(i)
        loss = float(-np.log(p[np.arange(n), y] + 1e-12).mean())
        correct = int((p.argmax(axis=1) == y).sum())
        d = p
        d[np.arange(n), y] -= 1
        d /= n
        self.grads[0][:] = (x.T @ d).ravel()
        self.grads[1][:] = d.sum(axis=0)
        return loss, correct, n, self.grads

    def evaluate(self):
        out = []
        for x, y in self.sets:
            i = share_indices(len(y), *self.share)
            p = self._forward(x[i])
            out.append(EvalSums(loss=float(-np.log(p[np.arange(len(i)), y[i]] + 1e-12).sum()),
                                correct=int((p.argmax(axis=1) == y[i]).sum()), count=len(i)))
        return out[0], out[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--coordinator", required=True)
    ap.add_argument("--rank", type=int, required=True)
    ap.add_argument("--train", type=int, default=6000)
    a = ap.parse_args()
    why = run_worker(Softmax(a.train), a.coordinator, a.rank, program="numpy-softmax")
    print("worker %d: %s" % (a.rank, why))


if __name__ == "__main__":
    main()
