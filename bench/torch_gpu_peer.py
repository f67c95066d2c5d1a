#!/usr/bin/env python3
"""torch_gpu_peer.py - PyTorch's training step on a CUDA GPU, the peer of
bench/gpu_step (which reads the JSON this writes).

    torch_gpu_peer.py OUT.json [--data DIR] [--seconds S] [--cpu-dry-run]

The models of conf/jobs/: mlp 784-256-256-10 with ReLU; cnn conv5x5x32
('same' padding, stride 1), ReLU, maxpool 2, conv5x5x64, ReLU, maxpool 2,
fc256, ReLU, fc10, on NCHW 1x28x28 inputs. Cross-entropy, SGD lr 0.01
momentum 0.9 (torch.optim.SGD, its default foreach implementation).

The training set lives on the GPU (Fashion-MNIST from --data DIR,
$MLT_FMNIST_DIR or /usr/share/datasets/fashion-mnist; else seeded random data
of the same shape, and the output says so). A step is the same work as
gpu_step's: gather the batch by a device index tensor (index_select), forward,
loss, backward, optimizer step, then advance the indices through a fixed
random permutation of the training set on the device (idx = perm[idx]), so
every step trains on a new batch of distinct samples with no host work.

Two ways, batch 32, 128 and 512:
  eager  the step as a plain PyTorch loop (zero_grad(set_to_none=True) first);
  graph  the step (index, forward, backward, optimizer.step, index advance)
         captured once with torch.cuda.graph on static tensors, after a
         warm-up on a side stream as the CUDA-graphs section of the PyTorch
         docs prescribes, and replayed.
Timing as gpu_step's: warm up, then N steps back to back with one
torch.cuda.synchronize() at the end (N >= 200 and long enough for >= S
seconds, default 1), median of 3 rounds, eager and graph interleaved.
Settings: cudnn.benchmark on (PyTorch picks the fastest convolution algorithm
by measuring, as ours does), TF32 allowed in cuDNN convolutions and not in
matmuls (both PyTorch's defaults, and ours).

Writes OUT.json:
  {"mlp": {"32": {"eager": ms, "graph": ms}, ...}, "cnn": {...},
   "torch": version, "device": name, "data": "fashion-mnist" | "random", ...}
with null for a number that could not be measured, prints a table, and exits
0; 1 when something failed (the JSON is still written); 77 without CUDA.
--cpu-dry-run checks this script where there is no GPU (eager steps on the
CPU, no graphs, few steps): the numbers mean nothing.
"""
import argparse
import gzip
import json
import os
import statistics
import sys
import time

import torch_peer  # bench/, beside this file: the models of the CPU peer

BATCHES = (32, 128, 512)
ROUNDS = 3
MIN_STEPS = 200
WARMUP_STEPS = 30
SIDE_WARMUP = 11  # iterations on the side stream before capture (the docs use 3; DDP 11)
LR = 0.01
MOMENTUM = 0.9
SEED = 1
DEB_FMNIST = "/usr/share/datasets/fashion-mnist"


def load_fmnist(torch, dirs):
    """(x [n,1,28,28] float32 in [0,1], y [n] int64, description) on the CPU,
    or None with the reason."""
    why = "no directory given"
    for d in dirs:
        if not d:
            continue
        img = os.path.join(d, "train-images-idx3-ubyte.gz")
        lab = os.path.join(d, "train-labels-idx1-ubyte.gz")
        if not (os.path.exists(img) and os.path.exists(lab)):
            why = f"{d}: no train-{{images,labels}} files"
            continue
        try:
            with gzip.open(img, "rb") as f:
                raw_x = f.read()
            with gzip.open(lab, "rb") as f:
                raw_y = f.read()
        except OSError as e:
            why = f"{d}: {e}"
            continue
        n = int.from_bytes(raw_x[4:8], "big")
        rows, cols = int.from_bytes(raw_x[8:12], "big"), int.from_bytes(raw_x[12:16], "big")
        if (int.from_bytes(raw_x[0:4], "big") != 0x803 or rows != 28 or cols != 28
                or len(raw_x) != 16 + n * 784 or len(raw_y) != 8 + n):
            why = f"{d}: not Fashion-MNIST's IDX training files"
            continue
        x = torch.frombuffer(bytearray(raw_x[16:]), dtype=torch.uint8)
        y = torch.frombuffer(bytearray(raw_y[8:]), dtype=torch.uint8)
        x = x.reshape(n, 1, 28, 28).float().div_(255.0)
        return x, y.long(), f"Fashion-MNIST training set ({n} samples) from {d}"
    return None, None, why


def build(nn, name):
    """The models, exactly as bench/torch_peer.py (the CPU peer) builds them."""
    return torch_peer.build(None, nn, name)


class Bench:
    """One model at one batch size: its eager step and its captured graph."""

    def __init__(self, torch, name, batch, x, y, perm, dev):
        self.torch = torch
        self.cuda = dev == "cuda"
        self.sync = torch.cuda.synchronize if self.cuda else (lambda: None)
        F = torch.nn.functional
        torch.manual_seed(SEED)
        self.model = build(torch.nn, name).to(dev)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=LR, momentum=MOMENTUM)
        self.x, self.y, self.perm, self.batch = x, y, perm, batch
        gen = torch.Generator().manual_seed(SEED + batch)
        start = int(torch.randint(0, x.shape[0] - batch, (1,), generator=gen))
        # the batch's indices (static for the graph); consecutive, so distinct
        self.idx = torch.arange(start, start + batch, device=dev)
        self.loss_fn = F.cross_entropy
        self.graph = None
        self.static_loss = None
        self.last_loss = None

    def step(self):
        """One eager step; returns the loss tensor (not synchronised)."""
        self.opt.zero_grad(set_to_none=True)
        xb = self.x.index_select(0, self.idx)
        yb = self.y.index_select(0, self.idx)
        loss = self.loss_fn(self.model(xb), yb)
        loss.backward()
        self.opt.step()
        self.idx.copy_(self.perm.index_select(0, self.idx))
        # detached: a loss that keeps its autograd graph alive keeps AccumulateGrad
        # nodes of the stream it ran on, and a later capture on the side stream
        # then fails (seen on an H200: the first configuration's capture, after one
        # step on the default stream, was invalidated)
        self.last_loss = loss.detach()
        return self.last_loss

    def capture(self):
        torch = self.torch
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(SIDE_WARMUP):
                self.step()
        torch.cuda.current_stream().wait_stream(s)
        self.sync()
        self.graph = torch.cuda.CUDAGraph()
        # as the docs' example: no grads, so backward allocates them from the graph's pool
        self.opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            xb = self.x.index_select(0, self.idx)
            yb = self.y.index_select(0, self.idx)
            self.static_loss = self.loss_fn(self.model(xb), yb)
            self.static_loss.backward()
            self.opt.step()
            self.idx.copy_(self.perm.index_select(0, self.idx))
        self.sync()

    def run(self, graph, n):
        """Seconds for n steps back to back, one synchronisation at the end."""
        self.sync()
        t0 = time.perf_counter()
        if graph:
            g = self.graph
            for _ in range(n):
                g.replay()
        else:
            for _ in range(n):
                self.step()
        self.sync()
        return time.perf_counter() - t0

    def steps_for(self, graph, seconds):
        per = self.run(graph, WARMUP_STEPS) / WARMUP_STEPS
        n = int(seconds / per) + 1 if per > 0 else MIN_STEPS
        return min(max(n, MIN_STEPS), 2_000_000)

    def loss(self, graph):
        t = self.static_loss if graph else self.last_loss
        return float(t) if t is not None else float("nan")


def fmt(v, width=11, prec=4):
    """A number of ms for the table, nan when missing."""
    return f"{v:{width}.{prec}f}" if v is not None else f"{'nan':>{width}}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", help="the JSON file to write")
    ap.add_argument("--data", default=None, help="directory with Fashion-MNIST's train-*.gz")
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum seconds per timed round")
    ap.add_argument("--cpu-dry-run", action="store_true",
                    help="check this script where there is no GPU: eager steps on the CPU, no "
                         "graphs; the numbers mean nothing")
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        print(f"no torch: {e}")
        return 77
    if args.cpu_dry_run:
        global MIN_STEPS, WARMUP_STEPS  # noqa: PLW0603 - a dry run only checks the code paths
        MIN_STEPS, WARMUP_STEPS = 2, 2
        dev, devname = "cpu", "CPU (dry run: no graphs, numbers meaningless)"
    elif not torch.cuda.is_available():
        print(f"no GPU: torch {torch.__version__} sees no CUDA device")
        return 77
    else:
        dev, devname = "cuda", torch.cuda.get_device_name(0)

    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cuda.matmul.allow_tf32 = False

    t0 = time.perf_counter()
    x, y, data_what = load_fmnist(torch, [args.data, os.environ.get("MLT_FMNIST_DIR"), DEB_FMNIST])
    data_kind = "fashion-mnist"
    if x is None:
        gen = torch.Generator().manual_seed(SEED)
        n = 60000
        x = torch.rand((n, 1, 28, 28), generator=gen)
        y = torch.randint(0, 10, (n,), generator=gen)
        data_what = f"SEEDED RANDOM data, {n} samples of 1x28x28 in [0,1), 10 classes " \
                    f"(no Fashion-MNIST: {data_what})"
        data_kind = "random"
    x, y = x.to(dev), y.to(dev)
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(SEED + 1)).to(dev)
    if dev == "cuda":
        torch.cuda.synchronize()
    print(f"# torch {torch.__version__}, {devname}; data: {data_what}; on the device in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)

    results = {"mlp": {}, "cnn": {}}
    detail = []
    failed = False
    for name in ("mlp", "cnn"):
        for batch in BATCHES:
            row = {"eager": None, "graph": None}
            results[name][str(batch)] = row
            try:
                b = Bench(torch, name, batch, x, y, perm, dev)
                loss0 = float(b.step())
                # two tries: on an H200 the process's first capture was once
                # invalidated while every later one succeeded
                for attempt in (1, 2) if dev == "cuda" else ():
                    try:
                        b.capture()
                        break
                    except Exception as e:  # noqa: BLE001 - report, time eager anyway
                        print(f"# {name} batch {batch}: graph capture failed (try {attempt}): "
                              f"{e!r}", flush=True)
                        b.graph = None
                        failed = failed or attempt == 2
                n_graph = b.steps_for(True, args.seconds) if b.graph else 0
                n_eager = b.steps_for(False, args.seconds)
                tg, te = [], []
                for _ in range(ROUNDS):
                    if b.graph:
                        tg.append(b.run(True, n_graph) * 1e3 / n_graph)
                    te.append(b.run(False, n_eager) * 1e3 / n_eager)
                row["graph"] = statistics.median(tg) if tg else None
                row["eager"] = statistics.median(te)
                detail.append(f"{name:5} {batch:5} graph {n_graph:7} eager {n_eager:7}  loss "
                              f"{loss0:.4f} -> eager {b.loss(False):.4f}, graph "
                              f"{b.loss(True):.4f}")
                del b
            except Exception as e:  # noqa: BLE001 - one configuration failing is reported
                print(f"# {name} batch {batch}: FAILED: {e!r}", flush=True)
                failed = True
            print(f"# done: {name} batch {batch}: graph {fmt(row['graph'], 0)} ms, eager "
                  f"{fmt(row['eager'], 0)} ms", flush=True)
            if dev == "cuda":
                torch.cuda.empty_cache()

    results.update({
        "torch": torch.__version__, "device": devname, "data": data_kind, "data_detail": data_what,
        "cudnn_benchmark": True, "seconds": args.seconds, "rounds": ROUNDS,
    })
    with open(args.out, "w") as f:
        json.dump(results, f, indent=1)
        f.write("\n")

    print(f"\n# PyTorch ms per training step ({devname}), median of {ROUNDS} rounds, each >= "
          f"{MIN_STEPS} steps and >= {args.seconds:g} s; TF32 convolutions, FP32 matmuls")
    print(f"{'model':5} {'batch':>5} {'graph':>11} {'eager':>11} {'gain':>7}")
    for name in ("mlp", "cnn"):
        for batch in BATCHES:
            r = results[name][str(batch)]
            gain = (f"{r['eager'] / r['graph']:6.2f}x" if r["graph"] and r["eager"]
                    else f"{'nan':>7}")
            print(f"{name:5} {batch:5} {fmt(r['graph'])} {fmt(r['eager'])} {gain}")
    print("\n# detail: steps per round; mean batch loss, first step -> after the timing")
    for line in detail:
        print(line)
    print(f"# wrote {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
