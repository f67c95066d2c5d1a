#!/usr/bin/python3
"""torch_peer.py - PyTorch CPU training speed of the fmnist-mlp and fmnist-cnn
models, the peer of bench/worker.sh.

    torch_peer.py MODEL [CORETYPES]  try every configuration, print each and the best
    torch_peer.py MODEL --one T J    one configuration: T torch threads, J 1 = jit.trace

MODEL is mlp (784-256-256-10, ReLU) or cnn (conv5x5x32 pad 2, ReLU, maxpool 2,
conv5x5x64 pad 2, ReLU, maxpool 2, fc256, ReLU, fc10), as in conf/jobs/. Each
step is what mltuner-worker's standalone step does: forward, cross-entropy,
backward and an SGD update (momentum 0.9, lr 0.03), batch 128, on seeded random
inputs held in memory (a pool of batches cycled through). 20 warm-up steps are
not timed; then steps are timed until at least 3 s have passed.

A configuration runs in its own process, because OpenBLAS reads its
environment when torch loads it: (2 torch threads, OPENBLAS_NUM_THREADS=1) and
(1 thread), each eager and jit.trace'd, each with every OPENBLAS_CORETYPE of
CORETYPES (comma-separated, "auto" leaves it unset; default "auto,SkylakeX":
OpenBLAS 0.3.21 takes some virtualised AVX-512 CPUs for a Prescott and then
runs torch's Linear layers on SSE3 kernels). Output lines:

    config threads=T jit=J coretype=C samples_per_s=X
    best threads=T jit=J coretype=C samples_per_s=X
"""
import os
import subprocess
import sys
import time

BATCH = 128
WARMUP_STEPS = 20
MIN_TIME_S = 3.0
POOL = 16  # batches held in memory


def build(model_name):
    import torch
    from torch import nn

    if model_name == "mlp":
        net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(784, 256), nn.ReLU(),
            nn.Linear(256, 256), nn.ReLU(),
            nn.Linear(256, 10))
    elif model_name == "cnn":
        net = nn.Sequential(
            nn.Conv2d(1, 32, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 256), nn.ReLU(),
            nn.Linear(256, 10))
    else:
        raise SystemExit("torch_peer.py: MODEL is mlp or cnn, not %r" % model_name)
    return net


def run_one(model_name, threads, jit):
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(1)
    net = build(model_name)
    g = torch.Generator().manual_seed(2)
    xs = torch.rand(POOL, BATCH, 1, 28, 28, generator=g)
    ys = torch.randint(0, 10, (POOL, BATCH), generator=g)
    if jit:
        net = torch.jit.trace(net, xs[0])
    opt = torch.optim.SGD(net.parameters(), lr=0.03, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step(i):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(xs[i % POOL]), ys[i % POOL])
        loss.backward()
        opt.step()
        return loss

    for i in range(WARMUP_STEPS):
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
    return n * BATCH / dt


CONFIGS = [(2, 0), (2, 1), (1, 0), (1, 1)]  # (torch threads, jit)


def main():
    args = sys.argv[1:]
    if len(args) == 4 and args[1] == "--one":
        sps = run_one(args[0], int(args[2]), int(args[3]) != 0)
        print("config threads=%s jit=%s samples_per_s=%.1f" % (args[2], args[3], sps))
        return 0
    if len(args) not in (1, 2) or args[0] not in ("mlp", "cnn"):
        print(__doc__, file=sys.stderr)
        return 2
    coretypes = (args[1] if len(args) == 2 else "auto,SkylakeX").split(",")
    best = None
    for coretype in coretypes:
        for threads, jit in CONFIGS:
            env = dict(os.environ)
            env["OPENBLAS_NUM_THREADS"] = "1"  # else OpenBLAS's threads fight torch's
            env["OMP_NUM_THREADS"] = str(threads)
            env["MKL_NUM_THREADS"] = str(threads)
            env.pop("OPENBLAS_CORETYPE", None)
            if coretype != "auto":
                env["OPENBLAS_CORETYPE"] = coretype
            r = subprocess.run([sys.executable, os.path.abspath(__file__), args[0], "--one",
                                str(threads), str(jit)],
                               env=env, stdout=subprocess.PIPE, universal_newlines=True)
            line = [l for l in r.stdout.splitlines() if l.startswith("config ")]
            if r.returncode != 0 or not line:
                print("config threads=%d jit=%d coretype=%s failed (exit %d)"
                      % (threads, jit, coretype, r.returncode))
                continue
            sps = float(line[0].rsplit("=", 1)[1])
            print("config threads=%d jit=%d coretype=%s samples_per_s=%.1f"
                  % (threads, jit, coretype, sps), flush=True)
            if best is None or sps > best[3]:
                best = (threads, jit, coretype, sps)
    if best is None:
        print("torch_peer.py: every configuration failed", file=sys.stderr)
        return 1
    print("best threads=%d jit=%d coretype=%s samples_per_s=%.1f" % best)
    return 0


if __name__ == "__main__":
    sys.exit(main())
