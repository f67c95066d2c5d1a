"""Data shares and a seekable shuffled sampler, numpy only.

The coordinator splits the training set into shares (share k of n: the
samples whose index % n == k, as mltuner-worker does) and may move a worker's
data cursor to a point in epochs (every trial of a search starts from the
same data). Sampler gives exactly that: per-epoch permutations of one share
drawn from (seed, epoch), a position, seek(epochs) and epoch().
"""

import math

import numpy as np


def share_indices(n: int, share: int, share_count: int) -> np.ndarray:
    """Indices of share `share` of `share_count` of n samples (index % count == share)."""
    if share_count < 1 or not 0 <= share < share_count:
        raise ValueError("data share %d of %d is not a share" % (share, share_count))
    return np.arange(share, n, share_count, dtype=np.int64)


def share_size(n: int, share: int, share_count: int) -> int:
    """len(share_indices(n, share, share_count)) without building it."""
    if share_count < 1 or not 0 <= share < share_count:
        raise ValueError("data share %d of %d is not a share" % (share, share_count))
    return n // share_count + (1 if share < n % share_count else 0)


class Sampler:
    """Mini-batches of indices over one share of n samples, reshuffled each
    epoch from (seed, share, epoch); the last batch of an epoch may be short."""

    def __init__(self, n: int, share: int, share_count: int, seed: int):
        self.idx = share_indices(n, share, share_count)
        if self.idx.size == 0:
            raise ValueError("data share %d of %d of %d samples is empty" % (share, share_count,
                                                                            n))
        self.seed, self.share = int(seed), int(share)
        self._epoch, self._pos, self._perm = 0, 0, None

    def __len__(self) -> int:
        return int(self.idx.size)

    def _order(self) -> np.ndarray:
        if self._perm is None:
            rng = np.random.default_rng([self.seed & 0xFFFFFFFFFFFFFFFF, self.share, self._epoch])
            self._perm = self.idx[rng.permutation(self.idx.size)]
        return self._perm

    def next_batch(self, batch: int) -> np.ndarray:
        """The next up to `batch` indices (a new epoch starts after a short one)."""
        if self._pos >= self.idx.size:
            self._epoch, self._pos, self._perm = self._epoch + 1, 0, None
        order = self._order()
        out = order[self._pos:self._pos + batch]
        self._pos += out.size
        return out

    def epoch(self) -> float:
        """Epochs of this share done: whole ones plus the fraction of this one."""
        return self._epoch + self._pos / self.idx.size

    def seek(self, epochs: float) -> None:
        e = int(math.floor(epochs))
        pos = int((epochs - e) * self.idx.size + 0.5)
        if pos >= self.idx.size:
            e, pos = e + 1, 0
        if e != self._epoch:
            self._perm = None
        self._epoch, self._pos = e, pos
