"""The largest batch that fits: event sizes as linear functions of the batch size.

Every op of the step is the same at any batch size; only tensor sizes change, and each is
``a + b * batch`` (activations scale with the batch, weights and optimiser state do not).
We fit ``a`` and ``b`` per storage from traces at two batch sizes, check the fit against a
third trace exactly (a whole step, or in :meth:`BatchModel.fit_to` the step up to its second
backward pass), then search the batch size through the allocator model.

The traces of a session run on one supernet. For CUDA targets that is a meta-device supernet
traced by :class:`~nasspeech.memory.meta_trace.MetaTracker` (the fast tracer); the fake
tracer serves CPU targets (and ``meta=False``). The extra traces need no attribution and
can run in a forked process while the caller traces the requested batch
(:meth:`StepTracerSession.trace_in_background`).
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import threading
import traceback
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from nasspeech.memory.allocator import replay
from nasspeech.memory.profiles import GpuProfile
from nasspeech.memory.setup import (
    SearchHyper,
    build_fake_supernet,
    make_batches,
    make_setup,
    prime_state,
    state_matches,
)
from nasspeech.memory.trace import Trace, trace_step
from nasspeech.space.config import SearchSpace

FIT_BATCHES = (2, 3)
#: the check trace of :meth:`BatchModel.fit_to` runs the step through this many backward
#: passes (second order: the virtual step's and the one at w', with everything around them)
CHECK_PASSES = 2


def fit_and_check_batches(batch_size: int) -> tuple[int, int]:
    """The second batch size of the fit and the check's, for a trace at ``batch_size``."""
    second = 3 if batch_size == 2 else 2
    return second, 4 if 3 in (batch_size, second) else 3
#: a job for :meth:`StepTracerSession.trace_in_background`: a batch size, or ``(batch size,
#: stop_after_tasks)`` for a prefix of the step
Job = int | tuple[int, int | None]


class StepTracerSession:
    """One supernet, traced at several batch sizes: the first trace starts from a primed
    steady state; each traced step leaves the steady state the next one starts from.

    ``meta`` (default: for CUDA targets) traces a meta-device supernet with the fast tracer;
    otherwise the supernet has fake CPU tensors.
    """

    def __init__(self, space: SearchSpace, hyper: SearchHyper, target: str = "cuda",
                 progress: Callable[[str], None] | None = None,
                 meta: bool | None = None) -> None:
        self._cpu_mark = _cpu_times()  # to see, by the time we could fork, if a core is idle
        self.space, self.target, self.progress = space, target, progress
        self.meta = target == "cuda" if meta is None else meta
        if self.meta and target != "cuda":
            raise ValueError("the meta tracer models CUDA targets only")
        foreach = True if target == "cuda" else None
        if self.meta:
            self.fake_mode = None
            self.cache: dict = {}
            with torch.device("meta"):
                model = space.build_supernet()
                self.setup = make_setup(model, space, 1, hyper, foreach=foreach)
        else:
            self.fake_mode = FakeTensorMode()
            model = build_fake_supernet(space, self.fake_mode)
            with self.fake_mode:
                self.setup = make_setup(model, space, 1, hyper, foreach=foreach)
        self.warm = False
        self.broken = False

    def trace(self, batch_size: int, attribute: bool = True,
              stop_after_tasks: int | None = None) -> Trace:
        """Trace one step at ``batch_size``. The first trace starts from a primed steady
        state (no warm-up step); if the step turns out to leave a different state, it is
        traced again after that step. ``attribute=False``: events and sizes only.
        ``stop_after_tasks``: a prefix of the step (see :func:`trace_step`), after which
        the session cannot trace again."""
        if self.broken:
            raise RuntimeError("this session traced a partial step; use a new session")
        with torch.device("meta") if self.meta else self.fake_mode:
            self.setup.train_batch, self.setup.val_batch = make_batches(self.space, batch_size)
        if self.warm:
            return self._trace(attribute, stop_after_tasks)
        # meta: Adam's step counters are CPU tensors, as on the fake CPU device (and on CUDA)
        with self.fake_mode if self.fake_mode is not None else contextlib.nullcontext():
            primed = prime_state(self.setup)
        if stop_after_tasks is not None:  # the state it leaves cannot be checked
            trace = self._trace(attribute, stop_after_tasks)
            trace.meta["primed"] = True
            return trace
        trace = self._trace(attribute)
        self.warm = True
        if not state_matches(self.setup, primed):
            trace = self._trace(attribute)
            trace.meta["primed"] = False
        else:
            trace.meta["primed"] = True
        return trace

    def _trace(self, attribute: bool, stop_after_tasks: int | None = None) -> Trace:
        tracker = None
        if self.meta:
            from nasspeech.memory.meta_trace import MetaTracker

            tracker = partial(MetaTracker, target=self.target, progress=self.progress,
                              attribute=attribute, cache=self.cache)
        self.broken = stop_after_tasks is not None
        return trace_step(self.setup, self.fake_mode, self.target, warmup=False,
                          progress=self.progress, tracker=tracker, attribute=attribute,
                          stop_after_tasks=stop_after_tasks)

    def trace_in_background(self, jobs: Iterable[Job],
                            parallel: bool | None = None) -> BackgroundTraces | None:
        """Start sizes-only traces (``jobs``: batch sizes, or ``(batch size,
        stop_after_tasks)`` for a prefix of the step) in a forked copy of this session,
        one after the other, while this process traces something else. None where that is
        not possible (not Linux, the fake tracer, other threads running) or, by default
        (``parallel=None``), would not pay: when no CPU core is idle (processes sharing a
        core run slower than one after the other), measured from ``/proc/stat`` since the
        session was created, while this process kept one core busy. ``parallel=False``
        never forks, ``True`` always does where it can (not where a forked copy could not
        run autograd: :func:`forked_autograd_works`)."""
        if parallel is False or not self.meta or not sys.platform.startswith("linux"):
            return None  # (fork is unsafe with some of macOS's system libraries)
        if any(not t.daemon for t in threading.enumerate()
               if t is not threading.main_thread()):
            return None  # a lock another thread holds would stay locked in the copy
        if parallel is None and idle_cores(self._cpu_mark) < 0.6:
            return None
        if not forked_autograd_works():
            return None
        return BackgroundTraces(self, [_job(j) for j in jobs])


_FORKED_AUTOGRAD_BROKEN = False


def forked_autograd_works() -> bool:
    """Whether a forked copy of this process can run a backward pass (Linux). It cannot
    once this process started autograd's device threads: on a machine with CUDA, its first
    backward pass does (PyTorch then refuses autograd in a fork). Tried in a fork; a
    failure is remembered (the threads do not go away)."""
    global _FORKED_AUTOGRAD_BROKEN
    if _FORKED_AUTOGRAD_BROKEN or not sys.platform.startswith("linux"):
        return not _FORKED_AUTOGRAD_BROKEN and sys.platform.startswith("linux")
    if not torch.cuda.is_available():
        return True  # no device threads without a device
    pid = os.fork()
    if pid == 0:  # the child: one tiny backward pass, exit without any cleanup
        code = 1
        try:
            x = torch.ones(1, requires_grad=True)
            (x * 2).sum().backward()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    _FORKED_AUTOGRAD_BROKEN = os.waitstatus_to_exitcode(status) != 0
    return not _FORKED_AUTOGRAD_BROKEN


def _job(job: Job) -> tuple[int, int | None]:
    return (job, None) if isinstance(job, int) else (int(job[0]), job[1])


def _cpu_times() -> tuple[int, int] | None:
    """(idle, total) CPU time of the machine so far, in clock ticks (Linux), else None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 5:
        return None
    return ticks[3] + ticks[4], sum(ticks)  # idle + iowait; user..steal


def idle_cores(since: tuple[int, int] | None) -> float:
    """How many CPU cores were idle on average since ``since`` (:func:`_cpu_times`); where
    that cannot be measured, the core count minus one (this process)."""
    now = _cpu_times()
    cores = os.cpu_count() or 1
    if since is None or now is None or now[1] - since[1] < 5:
        return cores - 1.0
    return cores * (now[0] - since[0]) / (now[1] - since[1])


class BackgroundTraces:
    """Sizes-only traces in a forked copy of a session, one after the other (two processes
    sharing a core run slower than one: only the caller's and this one), each sent as soon
    as it is done; :meth:`get` waits for one."""

    def __init__(self, session: StepTracerSession, jobs: list[tuple[int, int | None]]) -> None:
        from nasspeech.memory import meta_trace  # noqa: F401 - imported once, before forking

        self.pending = [b for b, _ in jobs]  # not received yet, in order
        self.results: dict[int, Trace | None] = {}
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: trace, send, exit without running any cleanup
            os.close(r)
            _send_traces(session, jobs, w)
        os.close(w)
        self.pid: int | None = pid
        self.pipe = os.fdopen(r, "rb")

    @property
    def jobs(self) -> set[int]:
        """The batch sizes whose traces were not collected yet."""
        return set(self.pending) | set(self.results)

    def get(self, batch_size: int) -> Trace | None:
        """The trace at ``batch_size`` (None if it failed in its process)."""
        while batch_size in self.pending:
            b = self.pending.pop(0)
            try:
                packed = pickle.load(self.pipe)
            except Exception:  # noqa: BLE001 - the process failed or was killed
                packed = None
            self.results[b] = _unpack_trace(packed) if packed is not None else None
        if not self.pending:
            self.close()
        return self.results.pop(batch_size, None)

    def close(self) -> None:
        """Stop (if still running) and reap the process."""
        if self.pid is None:
            return
        _reap(self.pid, self.pipe, kill=bool(self.pending))
        self.pid = None

    def __del__(self) -> None:
        self.close()


def _send_traces(session: StepTracerSession, jobs: list[tuple[int, int | None]],
                 fd: int) -> None:
    """In the forked process: trace each job and send it (None for one that failed, and
    nothing after it), then exit without any cleanup of the copy."""
    code = 0
    try:
        session.progress = None
        with os.fdopen(fd, "wb") as out:
            for b, stop in jobs:
                try:
                    t = session.trace(b, attribute=False, stop_after_tasks=stop)
                    packed: tuple | None = (
                        array("q", t.sizes()).tobytes(), array("q", t.events).tobytes(),
                        t.initial, t.batch_size, t.meta)
                except Exception:  # noqa: BLE001 - the caller traces it itself
                    packed, code = None, 1
                pickle.dump(packed, out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                if code:
                    break
    finally:
        os._exit(code)


def _get(session: StepTracerSession, background: BackgroundTraces | None, batch: int,
         stop: int | None, progress: Callable[[str], None] | None) -> Trace:
    """The sizes-only trace at ``batch`` from ``background``, else traced here."""
    t = background.get(batch) if background is not None and batch in background.jobs \
        else None
    if t is None:
        if progress is not None:
            progress(f"tracing at batch {batch} to fit sizes against the batch size"
                     if stop is None else f"tracing at batch {batch} to check the fit")
        t = session.trace(batch, attribute=False, stop_after_tasks=stop)
    return t


def _unpack_trace(packed: tuple) -> Trace:
    sizes, events, initial, batch, meta = packed
    trace = Trace(initial=initial, events=array("q", events).tolist(), batch_size=batch,
                  meta=meta)
    trace.nbytes = array("q", sizes).tolist()
    return trace


class ForkedCall:
    """``fn()`` in a forked copy of this process (Linux); :meth:`result` waits for it."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: call, send, exit without running any cleanup
            code = 0
            try:
                os.close(r)
                try:
                    payload = pickle.dumps(("ok", fn()), protocol=pickle.HIGHEST_PROTOCOL)
                except BaseException:  # noqa: BLE001 - reported to the parent
                    payload, code = pickle.dumps(("error", traceback.format_exc())), 1
                with os.fdopen(w, "wb") as out:
                    out.write(payload)
            finally:
                os._exit(code)
        os.close(w)
        self.pid: int | None = pid
        self.pipe = os.fdopen(r, "rb")

    def result(self) -> tuple[bool, Any]:
        """``(True, value)``, or ``(False, None)`` if the call failed."""
        if self.pid is None:
            return False, None
        try:
            data = self.pipe.read()
        finally:
            self.pipe.close()
            os.waitpid(self.pid, 0)
            self.pid = None
        try:
            status, value = pickle.loads(data)
        except Exception:  # noqa: BLE001 - the process was killed
            return False, None
        return status == "ok", value if status == "ok" else None

    def close(self) -> None:
        """Stop and reap the process if its result was not collected."""
        if self.pid is not None:
            _reap(self.pid, self.pipe, kill=True)
            self.pid = None


def _reap(pid: int, pipe, kill: bool) -> None:
    """Close the pipe to a forked process and wait for it (killing it first if asked)."""
    if kill:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    pipe.close()
    os.waitpid(pid, 0)


def trace_at(space: SearchSpace, batch_size: int, hyper: SearchHyper,
             target: str = "cuda") -> Trace:
    """Trace one search step of ``space`` at ``batch_size`` (meta tensors for CUDA targets,
    fake tensors for CPU)."""
    return StepTracerSession(space, hyper, target).trace(batch_size)


@dataclass
class BatchModel:
    """``sizes(batch) = intercept + slope * batch`` for every storage of one trace layout."""

    template: Trace
    intercept: np.ndarray
    slope: np.ndarray

    @classmethod
    def fit(
        cls,
        session: StepTracerSession,
        check: Trace | None = None,
        progress: Callable[[str], None] | None = None,
        background: BackgroundTraces | None = None,
    ) -> BatchModel | None:
        """Fit from traces at batch 2 and 3 (taken from ``background`` where it has them);
        verify on ``check`` (traced at 5 if not given), which must have the same events and
        exactly the predicted sizes. None if the event structure changes with the batch or
        the check fails."""
        say = progress or (lambda _m: None)
        traces = []
        for b in FIT_BATCHES:
            t = background.get(b) if background is not None and b in background.jobs else None
            if t is None:
                say(f"tracing at batch {b} to fit sizes against the batch size")
                t = session.trace(b, attribute=False)
            traces.append(t)
        if check is None:
            check = session.trace(5)
        model = cls.from_traces(check, traces[1], traces[0])
        return model if model is not None and model.checks(check) else None

    @classmethod
    def fit_to(
        cls,
        session: StepTracerSession,
        trace: Trace,
        progress: Callable[[str], None] | None = None,
        background: BackgroundTraces | None = None,
    ) -> BatchModel | None:
        """:meth:`line_to`, then :meth:`check_on`; None if either fails."""
        model = cls.line_to(session, trace, progress, background)
        if model is None or not model.check_on(session, progress, background):
            return None
        return model

    @classmethod
    def line_to(
        cls,
        session: StepTracerSession,
        trace: Trace,
        progress: Callable[[str], None] | None = None,
        background: BackgroundTraces | None = None,
    ) -> BatchModel | None:
        """The line through ``trace`` (the session's trace at the requested batch) and a
        sizes-only trace at batch 2 (from ``background`` where it has it); not checked yet
        (:meth:`check_on`). None if the events differ or a size does not change by a
        whole number of bytes per sample."""
        second, _ = fit_and_check_batches(trace.batch_size)
        other = _get(session, background, second, None, progress)
        return cls.from_traces(trace, trace, other)

    def check_on(
        self,
        session: StepTracerSession,
        progress: Callable[[str], None] | None = None,
        background: BackgroundTraces | None = None,
    ) -> bool:
        """Whether a trace at batch 3 of the step's first :data:`CHECK_PASSES` backward
        passes and everything before them (from ``background`` where it has it) has this
        model's events and exactly the predicted sizes. (Leaves ``session`` unable to trace
        again.)"""
        _, third = fit_and_check_batches(self.template.batch_size)
        return self.checks(_get(session, background, third, CHECK_PASSES, progress))

    @classmethod
    def from_traces(cls, template: Trace, a: Trace, b: Trace) -> BatchModel | None:
        """The line through the sizes of traces ``a`` and ``b`` (two batch sizes, the same
        events as ``template``, whose records it keeps). None if the layouts differ or a
        size does not change by a whole number of bytes per sample."""
        if not (_same_layout(template, a) and _same_layout(template, b)):
            return None
        if a.batch_size == b.batch_size:
            raise ValueError("two traces at different batch sizes are needed")
        sa = np.array(a.sizes(), dtype=np.int64)
        sb = np.array(b.sizes(), dtype=np.int64)
        slope, rest = np.divmod(sa - sb, a.batch_size - b.batch_size)
        if rest.any():
            return None
        return cls(template, sa - slope * a.batch_size, slope)

    def checks(self, trace: Trace) -> bool:
        """Whether ``trace`` (a whole step, or a prefix: ``stop_after_tasks``) has this
        model's events and exactly the predicted sizes at its batch size."""
        n, k = len(trace.events), len(trace.sizes())
        if trace.initial != self.template.initial or trace.events != self.template.events[:n]:
            return False
        if not trace.meta.get("partial") and (n, k) != (len(self.template.events),
                                                      len(self.slope)):
            return False
        predicted = self.intercept[:k] + self.slope[:k] * trace.batch_size
        return bool(np.array_equal(predicted, np.array(trace.sizes(), dtype=np.int64)))

    def __post_init__(self) -> None:
        allocs = self.template.allocs
        self._conv = np.array([i for i, a in enumerate(allocs)
                               if a.aten.startswith("convolution")], dtype=np.int64)
        self._fits_memo: dict[int, bool] | None = None  # during max_batch
        self._parallel = False
        events = np.array(self.template.events, dtype=np.int64)
        self._alloc_at = events >= 0
        self._index = np.where(self._alloc_at, events, ~events)
        self._initial = np.array(self.template.initial, dtype=np.int64)

    def sizes(self, batch: int) -> np.ndarray:
        return self.intercept + self.slope * batch

    def peak_allocated_lower_bound(self, batch: int) -> int:
        """Peak of the live curve (rounded sizes), fast: no allocator model."""
        sizes = self.sizes(batch)
        rounded = np.maximum(512, (sizes + 511) // 512 * 512)
        moved = rounded[self._index]
        signed = np.where(self._alloc_at, moved, -moved)
        base = int(rounded[self._initial].sum())
        return base + int(np.cumsum(signed).max(initial=0))

    def fits(self, batch: int, profile: GpuProfile) -> bool:
        from nasspeech.memory import overheads

        cublas = overheads.cublas_workspace(profile.hopper)
        context = overheads.CUDA_CONTEXT.value
        if self.peak_allocated_lower_bound(batch) > profile.capacity_bytes - context:
            return False  # the live bytes alone exceed the device: no need to replay
        sizes = self.sizes(batch)
        workspace = overheads.conv_workspace_high(int(sizes[self._conv].max())) \
            if len(self._conv) else 0
        budget = profile.capacity_bytes - context - workspace
        if budget <= 0:
            return False
        result = replay(sizes.tolist(), self.template.events, self.template.initial, budget,
                        cublas)
        return not result.oom

    def max_batch(self, profile: GpuProfile, limit: int = 1 << 20,
                  parallel: bool = False) -> int:
        """The largest batch size whose step fits ``profile`` (0 if none).

        A batch whose live bytes alone exceed the device cannot fit, so the search starts
        at the largest batch passing that cheap bound and walks down (1, 1, 2, 4, ... at a
        time) to a batch the allocator model fits, then bisects: usually two to four
        replays. The allocator model need not be monotone in the batch size (fragmentation
        can let a larger batch fit where a smaller one does not), so a result is accepted
        only if 5 % more (at least one more) does not fit either; else the search continues
        above it. ``parallel``: while replaying one batch, replay in a forked process the
        batch the search needs next if that one fits (the same search, sooner).
        """
        from nasspeech.memory import overheads

        self._parallel = parallel
        budget = profile.capacity_bytes - overheads.CUDA_CONTEXT.value
        lo, hi = 0, 1
        while hi < limit and self.peak_allocated_lower_bound(hi) <= budget:
            lo, hi = hi, hi * 2
        if lo == 0:
            return 0  # not even one sample's live bytes fit
        if (self.slope < 0).any():  # the bound need not grow with the batch: bisect
            self._fits_memo = None
            bad, probe = hi, lo
            while probe >= 1 and not self.fits(probe, profile):
                bad, probe = probe, probe // 2
            return self._bisect(probe, bad, profile)
        while hi - lo > 1:  # the largest batch passing the bound
            mid = (lo + hi) // 2
            if self.peak_allocated_lower_bound(mid) <= budget:
                lo = mid
            else:
                hi = mid
        top, floor = lo, 1
        self._fits_memo = {}
        while True:
            best = self._walk_down(top, floor, profile)
            more = max(best + 1, int(best * 1.05) + 1)
            if best == 0 or more > top or not self._fits(more, profile):
                return best
            floor = more

    def _walk_down(self, top: int, floor: int, profile: GpuProfile) -> int:
        """A batch in [floor, top] that fits while the next one does not (``floor`` fits
        unless it is 1), walking down from ``top``."""
        bad, probe, steps = top + 1, top, 0
        while probe > floor and not self._fits(probe, profile, (probe + bad) // 2):
            # 1, 1, 2, 4, ... below: the answer is often a batch or two below the bound
            bad, probe, steps = probe, max(probe - (1 << max(steps - 1, 0)), floor), steps + 1
        if probe == floor and floor == 1 and not self._fits(1, profile):
            return 0
        return self._bisect(probe, bad, profile)

    def _bisect(self, good: int, bad: int, profile: GpuProfile) -> int:
        """The boundary between a fitting batch ``good`` (or 0) and a failing one ``bad``."""
        while bad - good > 1:
            mid = (good + bad) // 2
            if self._fits(mid, profile, (mid + bad) // 2):
                good = mid
            else:
                bad = mid
        return good

    def _fits(self, batch: int, profile: GpuProfile, then: int | None = None) -> bool:
        """:meth:`fits`, remembered; with ``parallel``, ``then`` (the batch the search
        needs next if this one fits) is replayed meanwhile in a forked process."""
        memo = self._fits_memo
        if memo is None:
            return self.fits(batch, profile)
        if batch not in memo:
            ahead = None
            if self._parallel and then not in (None, batch) and then not in memo:
                ahead = ForkedCall(partial(self.fits, then, profile))
            memo[batch] = self.fits(batch, profile)
            if ahead is not None:
                ok, value = ahead.result()
                if ok:
                    memo[then] = value
        return memo[batch]


def _same_layout(a: Trace, b: Trace) -> bool:
    return (a.events == b.events and a.initial == b.initial
            and len(a.sizes()) == len(b.sizes()))
