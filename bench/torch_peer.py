#!/usr/bin/python3
"""torch_peer.py - PyTorch CPU training speed of the fmnist-mlp and fmnist-cnn
models, the peer of bench/worker.sh.

    torch_peer.py MODEL [--coretypes auto,SkylakeX] [--repeats N]

MODEL is mlp (784-256-256-10, ReLU) or cnn (conv5x5x32 pad 2, ReLU, maxpool 2,
conv5x5x64 pad 2, ReLU, maxpool 2, fc256, ReLU, fc10), as in conf/jobs/. A
step is what mltuner-worker's standalone step does: forward, cross-entropy,
backward and an SGD update (momentum 0.9, lr 0.03), batch 128, here on seeded
random inputs held in memory (a pool of batches cycled through). Each
configuration is warmed up with 20 untimed steps, then timed over steps until
at least 3 s have passed; samples/s = timed steps x 128 / time.

Configurations: 2 torch threads or 1 (OPENBLAS_NUM_THREADS=1 always: else
OpenBLAS's threads fight torch's), eager or torch.jit.trace'd, and each
OPENBLAS_CORETYPE of --coretypes ("auto" leaves it unset; OpenBLAS 0.3.21
takes some virtualised AVX-512 CPUs for a Prescott and runs torch's Linear
layers on SSE3 kernels). OpenBLAS reads its environment when torch loads it,
so each coretype runs in its own process; inside it the four thread/jit
configurations are timed in turn, the round repeated N times (default 1), so
that a burst of load on a shared host does not hit one configuration only.

Output lines (the last is the best of all):

    config threads=T jit=J coretype=C run=R samples_per_s=X
    best threads=T jit=J coretype=C samples_per_s=X
"""
import argparse
import os
import subprocess
import sys
import time

BATCH = 128
WARMUP_STEPS = 20
REWARM_STEPS = 3  # before a configuration's later runs (its thread pool may have slept)
MIN_TIME_S = 3.0
POOL = 16  # batches held in memory
CONFIGS = [(2, False), (2, True), (1, False), (1, True)]  # (torch threads, jit.trace)


def build(torch, nn, model_name):
    if model_name == "mlp":
        return nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, 10))
    return nn.Sequential(
        nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
        nn.Linear(256, 10))


def child(model_name, coretype, repeats):
    """Times every (threads, jit) configuration in this process."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(2)
    xs = torch.rand(POOL, BATCH, 1, 28, 28, generator=g)
    ys = torch.randint(0, 10, (POOL, BATCH), generator=g)
    loss_fn = nn.CrossEntropyLoss()
    steps = {}
    for threads, jit in CONFIGS:
        torch.manual_seed(1)
        net = build(torch, nn, model_name)
        if jit:
            net = torch.jit.trace(net, xs[0])
        opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)

        def step(i, net=net, opt=opt):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(net(xs[i % POOL]), ys[i % POOL])
            loss.backward()
            opt.step()
            return loss

        steps[threads, jit] = step

    for run in range(1, repeats + 1):
        for threads, jit in CONFIGS:
            torch.set_num_threads(threads)
            step = steps[threads, jit]
            for i in range(WARMUP_STEPS if run == 1 else REWARM_STEPS):
                step(i)
            n = 0
            t0 = time.perf_counter()
            while True:
                loss = step(n)
                n += 1
                dt = time.perf_counter() - t0
                if dt >= MIN_TIME_S:
                    break
            if not torch.isfinite(loss):
                print("# warning: the loss is not finite", file=sys.stderr)
            print("config threads=%d jit=%d coretype=%s run=%d samples_per_s=%.1f"
                  % (threads, jit, coretype, run, n * BATCH / dt), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=["mlp", "cnn"])
    ap.add_argument("--coretypes", default="auto,SkylakeX")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--child", metavar="CORETYPE", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.model, a.child, a.repeats)
        return 0
    best = None
    for coretype in a.coretypes.split(","):
        env = dict(os.environ)
        env["OPENBLAS_NUM_THREADS"] = "1"
        env["OMP_NUM_THREADS"] = "2"  # the pool torch.set_num_threads draws on
        env.pop("OPENBLAS_CORETYPE", None)
        if coretype != "auto":
            env["OPENBLAS_CORETYPE"] = coretype
        r = subprocess.run([sys.executable, os.path.abspath(__file__), a.model,
                            "--repeats", str(a.repeats), "--child", coretype],
                           env=env, stdout=subprocess.PIPE, universal_newlines=True)
        lines = [l for l in r.stdout.splitlines() if l.startswith("config ")]
        for l in lines:
            print(l, flush=True)
            f = dict(kv.split("=", 1) for kv in l.split()[1:])
            sps = float(f["samples_per_s"])
            if best is None or sps > best[3]:
                best = (int(f["threads"]), int(f["jit"]), coretype, sps)
        if r.returncode != 0:
            print("# coretype=%s: the child exited %d" % (coretype, r.returncode))
    if best is None:
        print("torch_peer.py: every configuration failed", file=sys.stderr)
        return 1
    print("best threads=%d jit=%d coretype=%s samples_per_s=%.1f" % best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
