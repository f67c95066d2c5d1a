"""The PyTorch layer: an nn.Module trained as a worker of a tuned job.

    from mltuner.pytorch import TorchModel, tensor_batches, classifier_eval
    model = TorchModel(net, batches, loss_fn, evaluate, train_size=n)
    model.run(coordinator, rank)

One table per parameter tensor (named as in net.named_parameters()). Pulls
write straight into the parameters' memory where the layout allows (a CPU,
float32, contiguous tensor: param.data viewed as a numpy array), else into a
buffer copied in; gradients are pushed from param.grad's memory without a
copy. The update rule and every tunable but the batch size stay on the
shards: there is no optimizer here, only forward and backward.

batches(batch_size, share, share_count, start_epoch) returns an iterator of
(inputs, targets) mini-batches of that size over the training samples of the
share (index % share_count == share), endless, starting start_epoch epochs
into the share; tensor_batches() makes one for tensors held in memory.
loss_fn(outputs, targets) is the batch's mean loss. evaluate(net, share,
share_count) returns (validation EvalSums, test EvalSums) over the share;
classifier_eval() makes one. init(net, seed), optional, sets the initial
weights worker 0 writes (default: torch.manual_seed(seed) and every
submodule's reset_parameters()).
"""

from typing import Callable, Optional

import numpy as np
import torch

from .data import Sampler, share_indices, share_size
from .session import EvalSums
from .worker import run_worker


def _numpy_view(t: torch.Tensor) -> Optional[np.ndarray]:
    """A flat float32 numpy array sharing t's memory, or None where that
    cannot be (another device, dtype or a non-contiguous layout)."""
    if t.device.type != "cpu" or t.dtype != torch.float32 or not t.is_contiguous():
        return None
    return t.detach().view(-1).numpy()


class TorchModel:
    """The model interface of mltuner.worker for an nn.Module (see the module
    docstring for the arguments)."""

    def __init__(self, net: torch.nn.Module, batches: Callable, loss_fn: Callable,
                 evaluate: Callable, *, train_size: int, init: Optional[Callable] = None,
                 accuracy: bool = True):
        self.net = net
        self.batches = batches
        self.loss_fn = loss_fn
        self.evaluate_fn = evaluate
        self.train_size = int(train_size)
        self.init_fn = init
        self.accuracy = accuracy  # count right argmax predictions in RUN reports
        self.named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
        if not self.named:
            raise ValueError("the module has no trainable parameters")
        self.tables = [(n, p.numel()) for n, p in self.named]
        for n, _ in self.tables:
            if len(n.encode()) > 128:
                raise ValueError("parameter name %r is longer than a table name may be (128)" % n)
        # the arrays pulls write into: the parameters' own memory where possible
        self.params, self.copied = [], []
        for k, (_, p) in enumerate(self.named):
            v = _numpy_view(p.data)
            if v is None:
                v = np.zeros(p.numel(), np.float32)
                self.copied.append(k)
            self.params.append(v)
        self.zero_copy = len(self.copied) == 0
        self._zeros = {}
        self.share = (0, 1)
        self.batch_size = None
        self.it = None
        self.seen = 0  # samples consumed from the share since start_epoch
        self.start_epoch = 0.0

    # ---- the model interface of mltuner.worker ----------------------------------------

    def load(self, task):
        self.set_share(task.share, task.share_count)
        return share_size(self.train_size, *self.share), self.train_size

    def set_share(self, share, count):
        epoch = self.epoch() if self.it is not None else 0.0
        self.share = (share, count)
        self._restart(epoch)

    def init(self, seed):
        if self.init_fn is not None:
            self.init_fn(self.net, seed)
        else:
            torch.manual_seed(seed)
            for m in self.net.modules():
                if hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self._params_out()

    def seek(self, epochs):
        self._restart(epochs)

    def epoch(self):
        n = share_size(self.train_size, *self.share)
        return self.start_epoch + self.seen / n

    def step(self, batch):
        if batch != self.batch_size:
            self.batch_size = batch
            self._restart(self.epoch())
        self._params_in()
        x, y = next(self.it)
        self.net.train()
        for _, p in self.named:
            p.grad = None if p.grad is None else p.grad.zero_()
        out = self.net(x)
        loss = self.loss_fn(out, y)
        loss.backward()
        n = int(y.shape[0]) if hasattr(y, "shape") and len(y.shape) else batch
        self.seen += n
        correct = 0
        if self.accuracy and out.dim() == 2 and y.dim() == 1:
            correct = int((out.detach().argmax(dim=1) == y).sum())
        grads = []
        for k, (_, p) in enumerate(self.named):
            g = None if p.grad is None else _numpy_view(p.grad)
            if g is None and p.grad is not None:  # another layout: one copy
                g = p.grad.detach().to("cpu", torch.float32).contiguous().view(-1).numpy()
            if g is None:  # unused parameter: a zero gradient
                g = self._zeros.setdefault(k, np.zeros(p.numel(), np.float32))
            grads.append(g)
        return float(loss.detach()), correct, n, grads

    def evaluate(self):
        self._params_in()
        self.net.eval()
        with torch.no_grad():
            v, t = self.evaluate_fn(self.net, *self.share)
        return v, t

    # ---- helpers ------------------------------------------------------------------

    def _restart(self, epoch):
        self.start_epoch, self.seen = float(epoch), 0
        self.it = iter(self.batches(self.batch_size or 128, self.share[0], self.share[1],
                                    self.start_epoch))

    def _params_in(self):
        """Pulled values into the parameters that are not views (a copy each)."""
        for k in self.copied:
            p = self.named[k][1]
            with torch.no_grad():
                p.copy_(torch.from_numpy(self.params[k]).view_as(p))

    def _params_out(self):
        for k in self.copied:
            p = self.named[k][1]
            self.params[k][:] = p.detach().to("cpu", torch.float32).reshape(-1).numpy()

    def run(self, coordinator: str, rank: int, *, program: str = "torch", keys=None,
            timeout_s: float = 0.0, verbose: bool = True) -> str:
        """Joins the job and trains until it ends; returns the reason."""
        return run_worker(self, coordinator, rank, program=program,
                          threads=torch.get_num_threads(), keys=keys, timeout_s=timeout_s,
                          verbose=verbose)


def tensor_batches(x: torch.Tensor, y: torch.Tensor, seed: int = 0) -> Callable:
    """A batches(batch_size, share, share_count, start_epoch) over tensors in
    memory: each epoch of a share in a fresh order drawn from (seed, share,
    epoch), as mltuner.data.Sampler draws it (a seek lands on the same data)."""

    def batches(batch_size, share, share_count, start_epoch):
        s = Sampler(len(y), share, share_count, seed)
        s.seek(start_epoch)
        while True:
            i = torch.from_numpy(s.next_batch(batch_size))
            yield x[i], y[i]

    return batches


def classifier_eval(sets, loss_fn_sum: Optional[Callable] = None,
                    batch: int = 2048) -> Callable:
    """An evaluate(net, share, share_count) for a classifier: sets is
    ((val_x, val_y), (test_x, test_y)); each is evaluated on the share's
    samples (index % share_count == share). loss_fn_sum(outputs, targets):
    the summed loss (default: cross-entropy)."""
    if loss_fn_sum is None:
        def loss_fn_sum(o, t):
            return torch.nn.functional.cross_entropy(o, t, reduction="sum")

    def evaluate(net, share, share_count):
        out = []
        for x, y in sets:
            idx = torch.from_numpy(share_indices(len(y), share, share_count))
            s = EvalSums()
            for k in range(0, len(idx), batch):
                i = idx[k:k + batch]
                o = net(x[i])
                s.loss += float(loss_fn_sum(o, y[i]))
                s.correct += int((o.argmax(dim=1) == y[i]).sum())
                s.count += len(i)
            out.append(s)
        return out[0], out[1]

    return evaluate


__all__ = ["TorchModel", "tensor_batches", "classifier_eval"]
