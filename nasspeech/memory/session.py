"""A tracing session: one supernet and its search recipe (fake or meta tensors), traced at
several batch sizes from a primed steady state, here or in a forked copy."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from functools import partial

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from nasspeech.config import SearchConfig
from nasspeech.memory.fork import BackgroundTraces, Job, as_job, can_fork, cpu_times, idle_cores
from nasspeech.memory.records import Trace
from nasspeech.memory.setup import (
    build_fake_supernet,
    make_batches,
    make_setup,
    prime_state,
    state_matches,
)
from nasspeech.memory.trace import trace_step
from nasspeech.space.config import SearchSpace


class StepTracerSession:
    """One supernet, traced at several batch sizes: the first trace starts from a primed
    steady state; each traced step leaves the steady state the next one starts from.

    ``meta`` (default: for CUDA targets) traces a meta-device supernet with the fast tracer;
    otherwise the supernet has fake CPU tensors.
    """

    def __init__(self, space: SearchSpace, search: SearchConfig, target: str = "cuda",
                 progress: Callable[[str], None] | None = None,
                 meta: bool | None = None) -> None:
        self._cpu_mark = cpu_times()  # to see, by the time we could fork, if a core is idle
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
                self.setup = make_setup(model, space, 1, search, foreach=foreach)
        else:
            self.fake_mode = FakeTensorMode()
            model = build_fake_supernet(space, self.fake_mode)
            with self.fake_mode:
                self.setup = make_setup(model, space, 1, search, foreach=foreach)
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
        not possible (the fake tracer, or :func:`~nasspeech.memory.fork.can_fork` says no)
        or, by default (``parallel=None``), would not pay: when no CPU core is idle
        (processes sharing a core run slower than one after the other), measured from
        ``/proc/stat`` since the session was created, while this process kept one core busy
        (:func:`~nasspeech.memory.fork.idle_cores`).
        ``parallel=False`` never forks, ``True`` always does where it can."""
        if parallel is False or not self.meta:
            return None
        if parallel is None and idle_cores(self._cpu_mark) < 0.6:
            return None
        if not can_fork():
            return None
        return BackgroundTraces(self, [as_job(j) for j in jobs])


def trace_at(space: SearchSpace, batch_size: int, search: SearchConfig,
             target: str = "cuda") -> Trace:
    """Trace one search step of ``space`` at ``batch_size`` (meta tensors for CUDA targets,
    fake tensors for CPU)."""
    return StepTracerSession(space, search, target).trace(batch_size)
