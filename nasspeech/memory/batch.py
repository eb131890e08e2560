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

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from nasspeech.memory.allocator import replay
from nasspeech.memory.fork import BackgroundTraces, ForkedCall, forked_autograd_works
from nasspeech.memory.profiles import GpuProfile
from nasspeech.memory.records import Trace
from nasspeech.memory.session import StepTracerSession, trace_at

__all__ = ["CHECK_PASSES", "FIT_BATCHES", "BackgroundTraces", "BatchModel", "ForkedCall",
           "StepTracerSession", "fit_and_check_batches", "forked_autograd_works", "trace_at"]

FIT_BATCHES = (2, 3)
#: the check trace of :meth:`BatchModel.fit_to` runs the step through this many backward
#: passes (second order: the virtual step's and the one at w', with everything around them)
CHECK_PASSES = 2


def fit_and_check_batches(batch_size: int) -> tuple[int, int]:
    """The second batch size of the fit and the check's, for a trace at ``batch_size``."""
    second = 3 if batch_size == 2 else 2
    return second, 4 if 3 in (batch_size, second) else 3
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

    def trace_at(self, batch: int) -> Trace:
        """The trace at ``batch`` without tracing: the template's events and records with
        the sizes of the line (exact where the model was checked: :meth:`checks`)."""
        from dataclasses import replace

        sizes = self.sizes(batch).tolist()
        t = self.template
        allocs = [replace(a, nbytes=int(n)) for a, n in zip(t.allocs, sizes, strict=True)]
        return Trace(allocs=allocs, initial=list(t.initial), events=list(t.events),
                     batch_size=batch, meta={**t.meta, "from_batch_model": True})

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
