"""The low-level layer: libmltuner's client (client/mltuner.h) in Python.

A Client connects to every shard of a job, registers its tables, pulls
parameters into caller-provided float32 numpy arrays and pushes gradients from
them, both without a copy on the Python side (the library reads and writes
the arrays' memory). Branch control and shard status are here too.

Every C call that returns -errno raises MltunerError with the library's text
(mlt_client_error) and the errno. A Client, like the C one, is used by one
thread at a time.
"""

import ctypes
import errno as _errno
import math
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from . import _lib as L

# branch kinds (MLT_BRANCH_*)
BRANCH_INIT = 0
BRANCH_TRAIN = 1
BRANCH_EVAL = 2
BRANCH_TEST = 3
BRANCH_SNAPSHOT = 4

_ERRLEN = 512


class MltunerError(Exception):
    """A libmltuner call failed. `errno` is the positive errno (e.g.
    errno.ENOENT), `text` the library's reason in words, `call` the C function
    that failed."""

    def __init__(self, call: str, err: int, text: str):
        self.call = call
        self.errno = err
        self.text = text
        name = _errno.errorcode.get(err, str(err))
        super().__init__("%s: %s (%s)" % (call, text or os.strerror(err), name))


def _check(call: str, rc: int, text_fn) -> int:
    if rc < 0:
        raise MltunerError(call, -rc, text_fn())
    return rc


@dataclass
class Tunables:
    """A branch's tunables; None leaves one as it is (a fork inherits it from
    its parent, a new root gets the default)."""

    lr: Optional[float] = None
    momentum: Optional[float] = None
    weight_decay: Optional[float] = None
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    eps: Optional[float] = None
    staleness: Optional[int] = None
    warmup: Optional[int] = None

    _FLOATS = ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps")

    def to_c(self) -> L.TunablesDef:
        t = L.TunablesDef()
        for f in self._FLOATS:
            v = getattr(self, f)
            setattr(t, f, math.nan if v is None else float(v))
        t.staleness = -1 if self.staleness is None else int(self.staleness)
        t.warmup = -1 if self.warmup is None else int(self.warmup)
        return t

    @classmethod
    def from_c(cls, t: L.TunablesDef) -> "Tunables":
        kw = {f: (None if math.isnan(getattr(t, f)) else getattr(t, f)) for f in cls._FLOATS}
        kw["staleness"] = None if t.staleness < 0 else t.staleness
        kw["warmup"] = None if t.warmup < 0 else t.warmup
        return cls(**kw)


@dataclass
class BranchStatus:
    id: int
    parent: int  # -1: root
    kind: int  # BRANCH_*
    min_clock: int
    owned_bytes: int
    shared_bytes: int
    diverged: bool
    tunables: Tunables


@dataclass
class ServerStatus:
    rank: int
    n_servers: int
    chunk_floats: int
    memory_limit: int
    memory_potential: int
    memory_allocated: int
    requests: int
    errors: int
    pulls: int
    pushes: int
    bytes_in: int
    bytes_out: int
    parked: int  # pulls waiting now
    job: str  # "": no job
    branches: List[BranchStatus] = field(default_factory=list)


def _keys_c(keys) -> Optional[L.ClientKeys]:
    """keys: None, or (public, secret, server) Z85 strings, or a mapping with
    public_key, secret_key, server_key."""
    if keys is None:
        return None
    if isinstance(keys, dict):
        keys = (keys["public_key"], keys["secret_key"], keys["server_key"])
    k = L.ClientKeys()
    for name, v in zip(("public_key", "secret_key", "server_key"), keys):
        b = v.encode() if isinstance(v, str) else bytes(v)
        if len(b) != 40:
            raise ValueError("%s: a Z85 key is 40 characters, not %d" % (name, len(b)))
        setattr(k, name, b)
    return k


def _as_table_array(a, size: int, what: str, writable: bool) -> np.ndarray:
    """a as a float32 C-contiguous numpy array of `size` values, never a copy:
    anything else is a TypeError/ValueError naming what is wrong."""
    if not isinstance(a, np.ndarray):
        raise TypeError("%s: a numpy array is needed (got %s)" % (what, type(a).__name__))
    if a.dtype != np.float32:
        raise TypeError("%s: float32 is needed (got %s); no copy is made" % (what, a.dtype))
    if not a.flags.c_contiguous:
        raise ValueError("%s: the array must be C-contiguous; no copy is made" % what)
    if writable and not a.flags.writeable:
        raise ValueError("%s: the array is read-only" % what)
    if a.size != size:
        raise ValueError("%s: %d values, but the table holds %d" % (what, a.size, size))
    return a


class _Closes:
    """A handle on a library object: close() on leaving a with-block, and
    when collected."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class Client(_Closes):
    """A connection to the n shards of a job as worker `worker`.

    endpoints: the shards' endpoints in rank order ("tcp://127.0.0.1:PORT").
    keys: CurveZMQ keys for a daemon with curve_key set (see _keys_c), or None.
    """

    def __init__(self, endpoints: Sequence[str], worker: int = 0, keys=None, *, _handle=None,
                 _owner=None):
        self._lib = L.lib()
        self._pending: List[np.ndarray] = []  # pushed buffers the library may still read
        self._pull_ptrs = ((), None, [])  # (ids of the arrays, void*[n], the arrays)
        self._sizes: List[int] = []
        if _handle is not None:  # a session's client: the session owns it
            self._h = ctypes.c_void_p(_handle)
            self._owner = _owner
            self._read_sizes()
            return
        self._owner = None
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        if not endpoints:
            raise ValueError("Client: at least one shard endpoint is needed")
        eps = (ctypes.c_char_p * len(endpoints))(*[e.encode() for e in endpoints])
        err = ctypes.create_string_buffer(_ERRLEN)
        k = _keys_c(keys)
        if k is None:
            h = self._lib.mlt_client_new(eps, len(endpoints), worker, err, _ERRLEN)
        else:
            h = self._lib.mlt_client_new_keys(eps, len(endpoints), worker, ctypes.byref(k), err,
                                              _ERRLEN)
        if not h:
            en = ctypes.get_errno() or _errno.ECONNREFUSED
            raise MltunerError("mlt_client_new", en, err.value.decode(errors="replace"))
        self._h = ctypes.c_void_p(h)

    # ---- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Destroys the client (a session's client is left to its session)."""
        if self._h is not None and self._owner is None:
            self._lib.mlt_client_destroy(ctypes.byref(self._h))
        self._h = None
        self._pending.clear()

    def _handle(self):
        if self._h is None or (self._owner is not None and self._owner._h is None):
            raise ValueError("the client is closed")
        return self._h

    def error(self) -> str:
        """The library's last error in words ("" if none)."""
        if self._h is None:
            return ""
        s = self._lib.mlt_client_error(self._h)
        return s.decode(errors="replace") if s else ""

    def _ok(self, call: str, rc: int) -> int:
        return _check(call, rc, self.error)

    def set_timeout(self, seconds: float) -> None:
        """Seconds any one wait for a reply may take before ETIMEDOUT (default 120)."""
        self._lib.mlt_client_set_timeout(self._handle(), float(seconds))

    # ---- tables -----------------------------------------------------------------

    def register(self, name: str, tables: Sequence[Tuple[str, int]], *, n_workers: int = 1,
                 rule: str = "sgd", average: bool = False) -> None:
        """Registers the job's tables, [(name, number of float32 values)...], on
        every shard (the same spec again is fine)."""
        defs = (L.TableDef * len(tables))()
        names = [n.encode() for n, _ in tables]  # alive for the call
        for i, (n, size) in enumerate(tables):
            defs[i].name = names[i]
            defs[i].size = int(size)
        job = L.JobDef(name.encode(), int(n_workers), rule.encode(), defs, len(tables), average)
        self._ok("mlt_client_register", self._lib.mlt_client_register(self._handle(),
                                                                      ctypes.byref(job)))
        self._read_sizes()

    def _read_sizes(self) -> None:
        h = self._handle()
        n = self._lib.mlt_client_n_tables(h)
        self._sizes = [int(self._lib.mlt_client_table_size(h, t)) for t in range(n)]

    @property
    def table_sizes(self) -> List[int]:
        """The registered tables' sizes (float32 values), in table order."""
        return list(self._sizes)

    def new_tables(self) -> List[np.ndarray]:
        """One zeroed float32 array per registered table, ready for pull()."""
        return [np.zeros(s, dtype=np.float32) for s in self._sizes]

    # ---- branches ---------------------------------------------------------------

    def branch_create(self, branch: int, kind: int = BRANCH_TRAIN,
                      tunables: Optional[Tunables] = None) -> None:
        t = (tunables or Tunables()).to_c()
        self._ok("mlt_branch_create",
                 self._lib.mlt_branch_create(self._handle(), branch, kind, ctypes.byref(t)))

    def branch_fork(self, child: int, parent: int, kind: int = BRANCH_TRAIN,
                    tunables: Optional[Tunables] = None) -> None:
        t = (tunables or Tunables()).to_c()
        self._ok("mlt_branch_fork",
                 self._lib.mlt_branch_fork(self._handle(), child, parent, kind, ctypes.byref(t)))

    def branch_free(self, branch: int) -> None:
        self._ok("mlt_branch_free", self._lib.mlt_branch_free(self._handle(), branch))

    def branch_set_tunables(self, branch: int, tunables: Tunables) -> None:
        t = tunables.to_c()
        self._ok("mlt_branch_set_tunables",
                 self._lib.mlt_branch_set_tunables(self._handle(), branch, ctypes.byref(t)))

    # ---- data -------------------------------------------------------------------

    def _table_index(self, table: int) -> int:
        if not 0 <= table < len(self._sizes):
            raise IndexError("table %d: the job has %d tables" % (table, len(self._sizes)))
        return table

    def write(self, branch: int, table: int, values: np.ndarray) -> None:
        """Overwrites a whole table of branch (synchronous)."""
        t = self._table_index(table)
        a = _as_table_array(values, self._sizes[t], "write table %d" % t, False)
        self._ok("mlt_write", self._lib.mlt_write(self._handle(), branch, t, a.ctypes.data))

    def pull(self, branch: int, clock: int, dst: Sequence[np.ndarray]) -> None:
        """Fills dst[t] (one float32 C-contiguous array per table, written in
        place) with branch's parameters as of every worker's clocks <=
        clock - staleness - 1 (waits on the shards until they are there)."""
        if len(dst) != len(self._sizes):
            raise ValueError("pull: %d arrays for %d tables" % (len(dst), len(self._sizes)))
        key = tuple((id(a), a.ctypes.data if isinstance(a, np.ndarray) else 0) for a in dst)
        if self._pull_ptrs[0] != key:
            for t, a in enumerate(dst):
                _as_table_array(a, self._sizes[t], "pull table %d" % t, True)
            ptrs = (ctypes.c_void_p * len(dst))(*[a.ctypes.data for a in dst])
            self._pull_ptrs = (key, ptrs, list(dst))  # the arrays stay alive with it
        ptrs = self._pull_ptrs[1]
        self._ok("mlt_pull", self._lib.mlt_pull(self._handle(), branch, int(clock), ptrs))

    def pull_min_clock(self, branch: int) -> int:
        """min_clock the data of the last pull of branch reflects (-1: none)."""
        return int(self._lib.mlt_pull_min_clock(self._handle(), branch))

    @property
    def pulls_prefetched(self) -> int:
        return int(self._lib.mlt_pull_prefetched(self._handle()))

    def keep_dst(self, keep: bool = True) -> None:
        """Promise not to write the pulled arrays between pulls: a pull the
        cache serves with the copy they already hold then copies nothing."""
        self._lib.mlt_client_keep_dst(self._handle(), bool(keep))

    def forget_dst(self) -> None:
        """The pulled arrays were changed after all: the next pull copies."""
        self._lib.mlt_client_forget_dst(self._handle())

    @property
    def pull_copies_skipped(self) -> int:
        return int(self._lib.mlt_pull_copies_skipped(self._handle()))

    @property
    def transport(self) -> str:
        s = self._lib.mlt_client_transport(self._handle())
        return s.decode(errors="replace") if s else ""

    def push(self, branch: int, table: int, grad: np.ndarray) -> None:
        """Sends the gradient of one whole table (mean over the batch). Does
        not wait; with staleness 0 the library reads the array itself until the
        next clock() or sync() returns, so do not change it before then (the
        client keeps it alive). Errors come back from a later call."""
        t = self._table_index(table)
        a = _as_table_array(grad, self._sizes[t], "push table %d" % t, False)
        self._ok("mlt_push", self._lib.mlt_push(self._handle(), branch, t, a.ctypes.data))
        self._pending.append(a)

    def clock(self, branch: int, clock: int) -> None:
        """This worker finished `clock` clocks on branch (see mltuner.h)."""
        self._ok("mlt_clock", self._lib.mlt_clock(self._handle(), branch, int(clock)))
        self._pending.clear()

    def sync(self) -> None:
        """Waits for every outstanding request; raises the first error among them."""
        self._ok("mlt_sync", self._lib.mlt_sync(self._handle()))
        self._pending.clear()

    # ---- the shards -------------------------------------------------------------

    def status(self, server: int = 0) -> ServerStatus:
        s = L.ServerStatus()
        self._ok("mlt_client_status",
                 self._lib.mlt_client_status(self._handle(), server, ctypes.byref(s)))
        try:
            branches = []
            for i in range(s.n_branches):
                b = s.branches[i]
                branches.append(BranchStatus(b.id, b.parent, b.kind, b.min_clock, b.owned_bytes,
                                             b.shared_bytes, bool(b.diverged),
                                             Tunables.from_c(b.tunables)))
            return ServerStatus(s.rank, s.n_servers, s.chunk_floats, s.memory_limit,
                                s.memory_potential, s.memory_allocated, s.requests, s.errors,
                                s.pulls, s.pushes, s.bytes_in, s.bytes_out, s.parked,
                                s.job.decode(errors="replace"), branches)
        finally:
            self._lib.mlt_server_status_free(ctypes.byref(s))

    def job_end(self) -> None:
        """Drops the job on every shard (all branches freed)."""
        self._ok("mlt_client_job_end", self._lib.mlt_client_job_end(self._handle()))


def library_path() -> str:
    """The path of the libmltuner.so in use (loads it)."""
    return L.lib().path
