#!/usr/bin/python3
"""torch_fmnist.py - the fmnist-mlp workload (DESIGN.md section 10) in plain
PyTorch, as a worker of a job tuned by mltunerd, or alone as the baseline.

As a worker (scripts/run-local starts one per rank with --worker-cmd):
    scripts/run-local conf/jobs/fmnist-mlp.conf --set model.type=external \\
        --worker-cmd "/usr/bin/python3 examples/torch_fmnist.py"
    torch_fmnist.py --coordinator ENDPOINT --rank N [--threads T]
  The network is 784-(model.layers)-10 with ReLU; the data come from the job
  file's data.train_images/train_labels/test_images/test_labels (IDX,
  gzipped or not), minus data.validation samples held out (a split seeded by
  the job's seed), the first data.subset of the rest when subset > 0. The
  daemon applies the update rule and the tunables; this program only
  computes gradients at the batch size each task names.

Alone (no daemon: the same forward/backward with torch.optim.AdamW, or SGD,
stepping in the process, or none), to compare samples/s:
    torch_fmnist.py --alone [--epochs E] [--batch B] [--lr LR] [--job JOB.conf]
                    [--optimizer adamw|sgd|none]
Needs torch (Debian: python3-torch) and numpy. Set OPENBLAS_NUM_THREADS=1
(done here unless set) or torch's threads fight OpenBLAS's.
"""
import argparse
import gzip
import os
import struct
import sys
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "python"))  # the source tree's package

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from mltuner import jobfile  # noqa: E402
from mltuner.pytorch import TorchModel, classifier_eval, tensor_batches  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist/"
DEFAULTS = {"data.train_images": FMNIST + "train-images-idx3-ubyte.gz",
            "data.train_labels": FMNIST + "train-labels-idx1-ubyte.gz",
            "data.test_images": FMNIST + "t10k-images-idx3-ubyte.gz",
            "data.test_labels": FMNIST + "t10k-labels-idx1-ubyte.gz",
            "data.validation": 5000, "data.subset": 0, "seed": 1, "model.layers": [256, 256]}


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy array of its dimensions."""
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise ValueError("%s: not an IDX file of unsigned bytes" % path)
    nd = raw[3]
    dims = struct.unpack(">%dI" % nd, raw[4:4 + 4 * nd])
    n = int(np.prod(dims))
    if len(raw) < 4 + 4 * nd + n:
        raise ValueError("%s: %d bytes, its header says %d" % (path, len(raw), 4 + 4 * nd + n))
    return np.frombuffer(raw, np.uint8, n, 4 + 4 * nd).reshape(dims)


def key(job, path):
    return jobfile.get(job, path, DEFAULTS[path])


def load_data(job):
    """(train_x, train_y, ((val_x, val_y), (test_x, test_y))) as tensors."""
    x = read_idx(key(job, "data.train_images")).reshape(-1, 784).astype(np.float32) / 255
    y = read_idx(key(job, "data.train_labels")).astype(np.int64)
    tx = read_idx(key(job, "data.test_images")).reshape(-1, 784).astype(np.float32) / 255
    ty = read_idx(key(job, "data.test_labels")).astype(np.int64)
    hold = int(key(job, "data.validation"))
    if not 0 <= hold < len(y):
        raise ValueError("data.validation = %d leaves no training samples of %d" % (hold, len(y)))
    perm = np.random.default_rng(int(key(job, "seed"))).permutation(len(y))
    tr, va = perm[:len(y) - hold], perm[len(y) - hold:]
    subset = int(key(job, "data.subset"))
    if 0 < subset < len(tr):
        tr = tr[:subset]
    t = torch.from_numpy
    return (t(x[tr]), t(y[tr]), ((t(x[va]), t(y[va])), (t(tx), t(ty))))


def make_net(layers):
    mods, n_in = [], 784
    for units in layers:
        mods += [torch.nn.Linear(n_in, int(units)), torch.nn.ReLU()]
        n_in = int(units)
    mods.append(torch.nn.Linear(n_in, 10))
    return torch.nn.Sequential(*mods)


class FmnistWorker(TorchModel):
    """A TorchModel whose JOB task builds the network and data from the job text."""

    def __init__(self):
        self.job = None

    def load(self, task):
        if task.model not in ("external", "mlp"):
            raise ValueError("torch_fmnist.py trains an mlp; this job's model.type is %s "
                             "(use model.type = \"external\")" % task.model)
        self.job = jobfile.parse(task.job_text or "")
        x, y, sets = load_data(self.job)
        net = make_net(key(self.job, "model.layers"))
        TorchModel.__init__(self, net, tensor_batches(x, y, seed=task.seed),
                            F.cross_entropy, classifier_eval(sets), train_size=len(y))
        if not self.zero_copy:  # never for this network on the CPU
            sys.stderr.write("torch_fmnist: tables %s are copied\n" % self.copied)
        return TorchModel.load(self, task)


def alone(a):
    """The same loop with a torch optimizer, no daemon: samples/s and accuracy."""
    job = jobfile.parse(open(a.job).read()) if a.job else {}
    torch.manual_seed(int(key(job, "seed")))
    x, y, sets = load_data(job)
    net = make_net(key(job, "model.layers"))
    opt = None
    if a.optimizer == "adamw":
        opt = torch.optim.AdamW(net.parameters(), lr=a.lr)
    elif a.optimizer == "sgd":
        opt = torch.optim.SGD(net.parameters(), lr=a.lr, momentum=0.9)
    batches = iter(tensor_batches(x, y, seed=int(key(job, "seed")))(a.batch, 0, 1, 0.0))
    evaluate = classifier_eval(sets)
    steps = (len(y) + a.batch - 1) // a.batch
    print("%-6s %-10s %-10s %-10s %s" % ("epoch", "loss", "val_acc", "test_acc", "samples/s"))
    for epoch in range(1, a.epochs + 1):
        t0, total, n = time.monotonic(), 0.0, 0
        net.train()
        for _ in range(steps):
            bx, by = next(batches)
            net.zero_grad()
            loss = F.cross_entropy(net(bx), by)
            loss.backward()
            if opt is not None:
                opt.step()
            total += float(loss.detach())
            n += len(by)
        dt = time.monotonic() - t0
        net.eval()
        with torch.no_grad():
            v, t = evaluate(net, 0, 1)
        print("%-6d %-10.4f %-10.4f %-10.4f %.0f" % (epoch, total / steps, v.correct / v.count,
                                                    t.correct / t.count, n / dt), flush=True)


def main():
    ap = argparse.ArgumentParser(description="fmnist-mlp in PyTorch: a worker of a tuned job, "
                                             "or --alone")
    ap.add_argument("--coordinator", help="the control endpoint of mltunerd rank 0")
    ap.add_argument("--rank", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    ap.add_argument("--alone", action="store_true", help="train without a daemon (baseline)")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--optimizer", choices=["adamw", "sgd", "none"], default="adamw",
                    help="--alone: the update in the process (none: forward/backward only, "
                         "the share of the work a worker does)")
    ap.add_argument("--job", help="--alone: take the data keys from this job file")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    if a.alone:
        alone(a)
        return 0
    if not a.coordinator:
        ap.error("--coordinator is needed (or --alone)")
    why = FmnistWorker().run(a.coordinator, a.rank, program="torch-fmnist")
    print("worker %d: %s" % (a.rank, why))
    return 0


if __name__ == "__main__":
    sys.exit(main())
