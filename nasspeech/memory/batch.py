"""The largest batch that fits: event sizes as linear functions of the batch size.

Every op of the step is the same at any batch size; only tensor sizes change, and each is
``a + b * batch`` (activations scale with the batch, weights and optimiser state do not).
We fit ``a`` and ``b`` per storage from traces at two batch sizes, check the fit against a
third trace exactly, then bisect the batch size through the allocator model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from torch._subclasses.fake_tensor import FakeTensorMode

from nasspeech.memory.allocator import replay, round_size
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


class StepTracerSession:
    """One fake supernet, traced at several batch sizes: the first trace runs an untraced
    warm-up step; each traced step leaves the steady state the next one starts from."""

    def __init__(self, space: SearchSpace, hyper: SearchHyper, target: str = "cuda",
                 progress: Callable[[str], None] | None = None) -> None:
        self.space, self.target, self.progress = space, target, progress
        self.fake_mode = FakeTensorMode()
        model = build_fake_supernet(space, self.fake_mode)
        with self.fake_mode:
            self.setup = make_setup(model, space, 1, hyper,
                                    foreach=True if target == "cuda" else None)
        self.warm = False

    def trace(self, batch_size: int) -> Trace:
        """Trace one step at ``batch_size``. The first trace starts from a primed steady
        state (no warm-up step); if the step turns out to leave a different state, it is
        traced again after a real warm-up step."""
        with self.fake_mode:
            fresh = make_batches(self.space, batch_size)
        self.setup.train_batch, self.setup.val_batch = fresh
        if self.warm:
            return trace_step(self.setup, self.fake_mode, self.target, warmup=False,
                              progress=self.progress)
        with self.fake_mode:
            primed = prime_state(self.setup)
        trace = trace_step(self.setup, self.fake_mode, self.target, warmup=False,
                           progress=self.progress)
        self.warm = True
        if not state_matches(self.setup, primed):
            trace = trace_step(self.setup, self.fake_mode, self.target, warmup=False,
                               progress=self.progress)
            trace.meta["primed"] = False
        else:
            trace.meta["primed"] = True
        return trace


def trace_at(space: SearchSpace, batch_size: int, hyper: SearchHyper,
             target: str = "cuda") -> Trace:
    """Trace one search step of ``space`` on fake tensors at ``batch_size``."""
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
    ) -> BatchModel | None:
        """Fit from traces at batch 2 and 3; verify on ``check`` (traced at 5 if not given).
        None if the event structure changes with the batch or the check fails."""
        say = progress or (lambda _m: None)
        traces = []
        for b in FIT_BATCHES:
            say(f"tracing at batch {b} to fit sizes against the batch size")
            traces.append(session.trace(b))
        t2, t3 = traces
        if not _same_layout(t2, t3):
            return None
        s2 = np.array(t2.sizes(), dtype=np.int64)
        s3 = np.array(t3.sizes(), dtype=np.int64)
        slope = s3 - s2
        model = cls(t3, s2 - slope * FIT_BATCHES[0], slope)
        if check is None:
            check = session.trace(5)
        if not _same_layout(t3, check):
            return None
        if not np.array_equal(model.sizes(check.batch_size), np.array(check.sizes())):
            return None
        return model

    def sizes(self, batch: int) -> np.ndarray:
        return self.intercept + self.slope * batch

    def peak_allocated_lower_bound(self, batch: int) -> int:
        """Peak of the live curve (rounded sizes), fast: no allocator model."""
        sizes = self.sizes(batch)
        rounded = np.maximum(512, (sizes + 511) // 512 * 512)
        events = np.array(self.template.events, dtype=np.int64)
        signed = np.where(events >= 0, rounded[np.where(events >= 0, events, 0)],
                          -rounded[np.where(events < 0, ~events, 0)])
        base = int(rounded[self.template.initial].sum()) if self.template.initial else 0
        return base + int(np.cumsum(signed).max(initial=0))

    def fits(self, batch: int, profile: GpuProfile) -> bool:
        from nasspeech.memory.estimate import device_overheads

        sizes = [int(s) for s in self.sizes(batch)]
        scaled = Trace(allocs=[], initial=self.template.initial, events=self.template.events)
        cublas, context, _ = device_overheads(self.template, profile)
        conv = [sizes[i] for i, a in enumerate(self.template.allocs)
                if a.aten.startswith("convolution")]
        workspace = round_size(max(conv)) if conv else 0
        budget = profile.capacity_bytes - context - workspace
        if budget <= 0:
            return False
        del scaled
        result = replay(sizes, self.template.events, self.template.initial, budget, [cublas])
        return not result.oom

    def max_batch(self, profile: GpuProfile, limit: int = 1 << 20) -> int:
        """The largest batch size whose step fits ``profile`` (0 if none)."""
        from nasspeech.memory.estimate import device_overheads

        _, context, _ = device_overheads(self.template, profile)
        budget = profile.capacity_bytes - context
        lo, hi = 0, 1
        while hi < limit and self.peak_allocated_lower_bound(hi) <= budget:
            lo, hi = hi, hi * 2
        # lo passes the cheap bound; find the largest passing the full model in [0, hi)
        good, bad = 0, hi
        probe = lo
        while probe >= 1 and not self.fits(probe, profile):
            bad, probe = probe, probe // 2
        good = probe
        while bad - good > 1:
            mid = (good + bad) // 2
            if self.fits(mid, profile):
                good = mid
            else:
                bad = mid
        return good


def _same_layout(a: Trace, b: Trace) -> bool:
    return a.events == b.events and a.initial == b.initial and len(a.allocs) == len(b.allocs)
