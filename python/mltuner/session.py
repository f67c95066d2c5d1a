"""The worker session (mlt_session_* in client/mltuner.h) in Python.

A Session joins a job's coordinator (the control endpoint of mltunerd rank
0) as worker `rank` and hands out tasks; the program does what each says:

  JOB   build the model and data; load(tables, part, train_total) registers
        the tables on the job's shards and reports the worker ready
  INIT  (worker 0) write the initial parameters of task.branch through
        session.client.write(), then done()
  RUN   task.clocks clocks on task.branch from task.clock_start at
        task.batch_size: pull, compute, push every table, clock,
        report_clock(loss); then done()
  TEST  pull task.branch, evaluate this worker's share of the validation and
        test sets: report_test(validation, test)
  STOP  the job is over (task.reason): leave

Every failing call raises MltunerError with the library's text. A Session
(and its client) is used by one thread at a time.
"""

import ctypes
import errno as _errno
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

from . import _lib as L
from .client import Client, MltunerError, _Closes, _check, _keys_c

TASK_JOB = 1
TASK_INIT = 2
TASK_RUN = 3
TASK_TEST = 4
TASK_STOP = 5
TASK_NAMES = {TASK_JOB: "JOB", TASK_INIT: "INIT", TASK_RUN: "RUN", TASK_TEST: "TEST",
              TASK_STOP: "STOP"}

_ERRLEN = 512


def _s(b: Optional[bytes]) -> Optional[str]:
    return None if b is None else b.decode(errors="replace")


@dataclass
class Task:
    """A task, copied out of the library's (its strings stay valid here)."""

    kind: int  # TASK_*
    id: int
    branch: int  # INIT, RUN, TEST
    clock_start: int  # RUN: the first clock is clock_start + 1
    clocks: int  # RUN: how many
    batch_size: int  # RUN: the batch size to train at
    seek: bool  # RUN: first move the data cursor to data_epoch epochs of this share
    data_epoch: float
    share: int  # JOB, RUN, TEST: the data share to use, share of share_count
    share_count: int
    job_name: Optional[str]  # JOB
    job_text: Optional[str]  # JOB: the whole job file
    model: Optional[str]  # JOB: model.type
    n_workers: int
    seed: int  # JOB: the job's seed
    reason: Optional[str]  # STOP: why

    @property
    def name(self) -> str:
        return TASK_NAMES.get(self.kind, str(self.kind))

    @classmethod
    def from_c(cls, t: L.TaskStruct) -> "Task":
        return cls(int(t.kind), t.id, t.branch, t.clock_start, t.clocks, t.batch_size,
                   bool(t.seek), t.data_epoch, t.share, t.share_count, _s(t.job_name),
                   _s(t.job_text), _s(t.model), t.n_workers, t.seed, _s(t.reason))


@dataclass
class EvalSums:
    """One evaluation's sums over this worker's share of a data set."""

    loss: float = 0.0  # sum of per-sample losses
    correct: int = 0  # classification: samples predicted right
    count: int = 0  # samples evaluated
    sq_error: float = 0.0  # regression: sum of squared errors

    def to_c(self) -> L.EvalSums:
        return L.EvalSums(float(self.loss), int(self.correct), int(self.count),
                          float(self.sq_error))


class Session(_Closes):
    """Joins the coordinator as worker `rank`.

    program: what this worker runs (1..64 of A-Z a-z 0-9 . _ -; the workers of
    a job run one program); backends "cpu", "cuda" or "cpu,cuda"; threads:
    compute threads it uses; keys: CurveZMQ keys as for Client; timeout_s:
    seconds the coordinator may be unreachable before next() raises
    ETIMEDOUT (0: the library's default, 60; < 0: forever); on_event(text):
    called (from next()) with what the session did on its own, in words
    (joined again after a drop, the coordinator unreachable)."""

    def __init__(self, coordinator: str, rank: int, *, program: str = "python",
                 backends: str = "cpu", threads: int = 1, keys=None, timeout_s: float = 0.0, on_event=None):
        self._lib = L.lib()
        if not self._lib.has_session:
            raise MltunerError("mlt_session_join", _errno.ENOSYS,
                               "%s has no worker session (mlt_session_*): rebuild it"
                               % self._lib.path)
        self._keep = [coordinator.encode(), program.encode(), backends.encode()]
        self._keys = _keys_c(keys)
        self._event_fn = None
        if on_event is not None:
            self._event_fn = L.EVENT_FN(
                lambda _arg, what: on_event(what.decode(errors="replace") if what else ""))
        opts = L.SessionOpts(self._keep[0], int(rank), self._keep[1], self._keep[2],
                             int(threads),
                             ctypes.pointer(self._keys) if self._keys is not None else None,
                             float(timeout_s),
                             ctypes.cast(self._event_fn, ctypes.c_void_p) if self._event_fn is not None
                             else None, None)
        err = ctypes.create_string_buffer(_ERRLEN)
        self._h = None
        h = self._lib.mlt_session_join(ctypes.byref(opts), err, _ERRLEN)
        if not h:
            en = ctypes.get_errno() or _errno.ECONNREFUSED
            raise MltunerError("mlt_session_join", en, err.value.decode(errors="replace"))
        self._h = ctypes.c_void_p(h)
        self._task = L.TaskStruct()
        self._client: Optional[Client] = None
        self.rank = rank

    # ---- lifetime ---------------------------------------------------------------

    def close(self) -> None:
        """Leaves (if not yet) and frees the session and its client."""
        if self._h is not None:
            if self._client is not None:
                self._client._pending.clear()
            self._lib.mlt_session_destroy(ctypes.byref(self._h))
            self._h = None
        self._client = None

    def _handle(self):
        if self._h is None:
            raise ValueError("the session is closed")
        return self._h

    def error(self) -> str:
        if self._h is None:
            return ""
        s = self._lib.mlt_session_error(self._h)
        return s.decode(errors="replace") if s else ""

    def _ok(self, call: str, rc: int) -> int:
        return _check(call, rc, self.error)

    # ---- tasks ------------------------------------------------------------------

    def next(self, wait_s: float = 1.0) -> Optional[Task]:
        """The next task, or None when none came within wait_s seconds. Raises
        MltunerError: EADDRINUSE another worker joined as this rank,
        ETIMEDOUT the coordinator unreachable past timeout_s, ENOTCONN after
        leave. A task left unfinished is failed first."""
        rc = self._ok("mlt_session_next",
                      self._lib.mlt_session_next(self._handle(), float(wait_s),
                                                 ctypes.byref(self._task)))
        if rc == 0:
            return None
        return Task.from_c(self._task)

    def tasks(self, wait_s: float = 1.0):
        """Yields tasks until (and including) STOP."""
        while True:
            t = self.next(wait_s)
            if t is None:
                continue
            yield t
            if t.kind == TASK_STOP:
                return

    def load(self, tables: Sequence[Tuple[str, int]], part: int, train_total: int) -> Client:
        """JOB: registers the tables [(name, float32 values)...] on the job's
        shards and reports the job loaded; part: training samples in this
        worker's share, train_total: in the whole set. Returns the client."""
        defs = (L.TableDef * len(tables))()
        names = [n.encode() for n, _ in tables]
        for i, (n, size) in enumerate(tables):
            defs[i].name = names[i]
            defs[i].size = int(size)
        self._ok("mlt_session_load",
                 self._lib.mlt_session_load(self._handle(), defs, len(tables), int(part),
                                            int(train_total)))
        return self.client

    @property
    def client(self) -> Optional[Client]:
        """The job's client (pull, push, clock, write) after load(); owned by
        the session (a JOB task after a re-join gives a new one)."""
        h = self._lib.mlt_session_client(self._handle())
        if not h:
            self._client = None
            return None
        if self._client is None or self._client._h is None or self._client._h.value != h:
            self._client = Client((), _handle=h, _owner=self)
        return self._client

    def report_clock(self, clock: int, loss: float, correct: int = 0, count: int = 0,
                     epoch: float = 0.0) -> None:
        """RUN: clock `clock` is done: the batch's mean loss (NaN: diverged),
        samples right of count, epochs of its share this worker has done."""
        self._ok("mlt_session_report_clock",
                 self._lib.mlt_session_report_clock(self._handle(), int(clock), float(loss),
                                                    int(correct), int(count), float(epoch)))

    def report_test(self, validation: EvalSums, test: EvalSums) -> None:
        """TEST: the validation and test sums; ends the task."""
        v, t = validation.to_c(), test.to_c()
        self._ok("mlt_session_report_test",
                 self._lib.mlt_session_report_test(self._handle(), ctypes.byref(v),
                                                   ctypes.byref(t)))

    def done(self, epoch: float = 0.0) -> None:
        """INIT, RUN: the task is done (RUN: waits for every push to be applied)."""
        self._ok("mlt_session_done", self._lib.mlt_session_done(self._handle(), float(epoch)))
        if self._client is not None:
            self._client._pending.clear()

    def fail(self, why: str) -> None:
        """The current task failed: why goes to the coordinator's log (a JOB's
        failure fails the job)."""
        self._ok("mlt_session_fail",
                 self._lib.mlt_session_fail(self._handle(), why.encode(errors="replace")[:4000]))

    def leave(self) -> None:
        """Tells the coordinator this worker leaves; later calls raise ENOTCONN."""
        self._ok("mlt_session_leave", self._lib.mlt_session_leave(self._handle()))
