"""Marginal memory of each candidate op: how much the step's peak drops without it.

``fast`` (default) removes the op's own allocations (its saved activations, gradients,
weights and optimiser state, attributed through module hooks) from one trace and replays the
rest through the allocator model: one trace for all ops. It leaves the op's share of the
weighted sum in place, so it slightly understates the saving. ``exact`` re-traces the step
with the op removed from the op set (one trace per op).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nasspeech.config import SearchConfig
from nasspeech.memory.allocator import replay
from nasspeech.memory.overheads import cublas_workspace
from nasspeech.memory.profiles import GpuProfile, get_profile
from nasspeech.memory.records import Trace
from nasspeech.registry import get_op
from nasspeech.space.config import SearchSpace


@dataclass(frozen=True)
class OpCost:
    component: str
    op: str
    saves_allocated_bytes: int
    saves_reserved_bytes: int
    own_bytes_at_peak: int


def _peaks(trace: Trace, profile: GpuProfile, drop: tuple[str, str] | None = None) -> tuple[int, int]:
    cublas = cublas_workspace(profile.hopper)
    sizes = [a.nbytes for a in trace.allocs]
    if drop is None:
        events, initial = trace.events, trace.initial
    else:
        gone = {i for i, a in enumerate(trace.allocs) if (a.component, a.op) == drop}
        events = [e for e in trace.events if (e if e >= 0 else ~e) not in gone]
        initial = [i for i in trace.initial if i not in gone]
    r = replay(sizes, events, initial, None, preallocated=cublas)
    return r.peak_allocated, r.peak_reserved


def per_op_costs(
    space: SearchSpace,
    batch_size: int,
    gpu: str | GpuProfile = "a100-40gb",
    search: SearchConfig | None = None,
    exact: bool = False,
    trace: Trace | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int = 1,
) -> list[OpCost]:
    """Every removable candidate op of every component with what removing it saves, costliest
    first. ``none`` ops cost nothing (mixed ops skip them) and are left out. ``workers > 1``
    shares the replays (or traces) among that many forked processes
    (:func:`~nasspeech.memory.fork.fork_map`); the result is the same."""
    from nasspeech.memory.breakdown import breakdown_at_peak, op_key
    from nasspeech.memory.fork import fork_map
    from nasspeech.memory.session import trace_at

    profile = get_profile(gpu)
    search = search or SearchConfig()
    say = progress or (lambda _m: None)
    if trace is None:
        say(f"tracing the step at batch {batch_size}")
        trace = trace_at(space, batch_size, search)
    base_alloc, base_res = _peaks(trace, profile)
    own = breakdown_at_peak(trace)["by_op"]
    ops = [(comp.name, name) for comp in space.components for name in comp.ops
           if not get_op(comp.family, name).is_zero and len(comp.ops) >= 2]

    def peaks(op: tuple[str, str]) -> tuple[int, int]:
        if not exact:
            return _peaks(trace, profile, op)
        comp = next(c for c in space.components if c.name == op[0])
        fewer = space.with_changes(**{op[0]: {"ops": [o for o in comp.ops if o != op[1]]}})
        return _peaks(trace_at(fewer, batch_size, search), profile)

    if exact:
        say(f"re-tracing without each of {len(ops)} ops")
    found: dict[int, tuple[int, int]] = {}
    for i, ok, value in fork_map(peaks, ops, workers):
        if not ok:
            raise RuntimeError(f"per-op cost of {ops[i][0]}/{ops[i][1]}: {value}")
        found[i] = value
    costs = [OpCost(comp, name, base_alloc - found[i][0], base_res - found[i][1],
                    own.get(op_key(comp, name), 0)) for i, (comp, name) in enumerate(ops)]
    return sorted(costs, key=lambda c: -c.saves_allocated_bytes)
