"""The task loop of a worker, for any model held in float32 numpy arrays.

run_worker(model, coordinator, rank) joins the job and does what each task
says, as mltuner-worker does:

  JOB   model.load(task) builds the model and data for the task's share and
        returns (samples in this share, samples in the whole training set);
        the tables model.tables are registered on the job's shards
  INIT  model.init(seed) sets model.params; they are written to the branch
  RUN   for each clock: pull into model.params (in place), model.step(batch)
        -> (loss, correct, count, grads), push grads, clock, report the loss
  TEST  pull, model.evaluate() -> (validation sums, test sums), report them
  STOP  return the reason

The model object (duck-typed) has:
  tables: [(name, size)]          one float32 table per parameter tensor
  params: [np.ndarray]            float32, C-contiguous, one per table: pulls
                                  write into them (a torch module's own memory)
  load(task) -> (part, total)     JOB
  set_share(share, count)         RUN, TEST: the data share changed
  init(seed)                      INIT: initial values into params
  seek(epochs), epoch() -> float  the data cursor, in epochs of the share
  step(batch) -> (loss, correct, count, grads)
  evaluate() -> (EvalSums, EvalSums)
A branch whose gradients turn non-finite (the shard refuses them: EDOM) is
diverged: the worker keeps clocking so the others are not held up, reports
NaN losses, and the tuner frees the branch.
"""

import errno
import math
import sys
import time
from typing import Callable, Optional

from .client import MltunerError
from .session import (TASK_INIT, TASK_JOB, TASK_RUN, TASK_STOP, TASK_TEST, Session,
                      Task)


def _log_stderr(msg: str) -> None:
    sys.stderr.write("%s %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Worker:
    """Follows one session's tasks for `model` (see the module's docstring)."""

    def __init__(self, model, session: Session, log: Optional[Callable[[str], None]] = None):
        self.model = model
        self.session = session
        self.log = log or (lambda msg: None)
        self.client = None
        self.share = None
        self.batch_size = None
        self.samples = 0  # trained this process: samples/s
        self.train_s = 0.0
        self.clocks = 0

    # ---- one task each ------------------------------------------------------------

    def _job(self, t: Task) -> None:
        self.log("job %s (model.type %s, %d workers, seed %d): loading share %d of %d"
                 % (t.job_name, t.model, t.n_workers, t.seed, t.share, t.share_count))
        part, total = self.model.load(t)
        self.share = (t.share, t.share_count)
        self.client = self.session.load(self.model.tables, part, total)
        # the worker only reads what it pulls: a pull the cache serves with the
        # copy the parameters already hold copies nothing
        self.client.keep_dst(True)
        self.log("loaded: %d tables, %d parameters, %d of %d training samples; %s"
                 % (len(self.model.tables), sum(s for _, s in self.model.tables), part, total,
                    self.client.transport))

    def _share(self, t: Task) -> None:
        if self.share != (t.share, t.share_count):
            self.log("data share %d of %d" % (t.share, t.share_count))
            self.model.set_share(t.share, t.share_count)
            self.share = (t.share, t.share_count)

    def _init(self, t: Task) -> None:
        self.model.init(t.seed if t.seed else 0)
        for k, p in enumerate(self.model.params):
            self.client.write(t.branch, k, p)
        self.client.forget_dst()  # the parameters were written by init
        self.session.done()

    def _run(self, t: Task) -> None:
        self._share(t)
        if t.seek:
            self.model.seek(t.data_epoch)
        c, params = self.client, self.model.params
        diverged = False
        t0 = time.monotonic()
        for clock in range(t.clock_start, t.clock_start + t.clocks):
            loss, correct, count = math.nan, 0, t.batch_size
            if not diverged:
                try:
                    c.pull(t.branch, clock, params)
                except MltunerError as e:
                    if e.errno != errno.EDOM:
                        raise
                    diverged = True
            pushed_err = None
            if not diverged:
                loss, correct, count, grads = self.model.step(t.batch_size)
                if not math.isfinite(loss):
                    diverged = True
                else:
                    try:
                        for k, g in enumerate(grads):
                            c.push(t.branch, k, g)
                    except MltunerError as e:
                        pushed_err = e
            try:
                c.clock(t.branch, clock + 1)
            except MltunerError as e:
                if e.errno != errno.EDOM:
                    raise
                diverged = True
            if pushed_err is not None:
                if pushed_err.errno != errno.EDOM:
                    raise pushed_err
                diverged = True
            if diverged:
                loss, correct = math.nan, 0
            self.session.report_clock(clock + 1, loss, int(correct), int(count),
                                      self.model.epoch())
            self.samples += int(count)
            self.clocks += 1
        self.train_s += time.monotonic() - t0
        self.session.done(self.model.epoch())

    def _test(self, t: Task) -> None:
        self._share(t)
        self.client.pull(t.branch, 0, self.model.params)
        v, te = self.model.evaluate()
        self.session.report_test(v, te)
        if te.count:
            self.log("test of branch %d: validation %.4f, test %.4f"
                     % (t.branch, v.correct / max(v.count, 1), te.correct / te.count))

    # ---- the loop -------------------------------------------------------------------

    def run(self) -> str:
        """Follows tasks until STOP; returns its reason. A task that raises is
        failed with the exception's text (a failed JOB fails the job) and the
        exception is raised again."""
        handlers = {TASK_JOB: self._job, TASK_INIT: self._init, TASK_RUN: self._run,
                    TASK_TEST: self._test}
        for t in self.session.tasks(1.0):
            if t.kind == TASK_STOP:
                self.log("job over: %s" % t.reason)
                return t.reason or "job over"
            try:
                handlers[t.kind](t)
            except Exception as e:
                try:
                    self.session.fail("%s task: %s: %s" % (t.name, type(e).__name__, e))
                except MltunerError:
                    pass
                raise
        return "job over"


def run_worker(model, coordinator: str, rank: int, *, program: str = "python",
               threads: int = 1, keys=None, timeout_s: float = 0.0, verbose: bool = True) -> str:
    """Joins the job at `coordinator` as worker `rank` and follows its tasks
    for `model` until the job ends; returns the reason. Logs to stderr when
    verbose."""
    log = _log_stderr if verbose else None
    with Session(coordinator, rank, program=program, threads=threads, keys=keys,
                 timeout_s=timeout_s, on_event=log) as s:
        w = Worker(model, s, log)
        why = w.run()
        if w.train_s > 0 and log:
            log("trained %d samples in %d clocks, %.1f s: %.0f samples/s"
                % (w.samples, w.clocks, w.train_s, w.samples / w.train_s))
        return why
