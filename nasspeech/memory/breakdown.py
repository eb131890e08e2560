"""Where the bytes are at the peak: live bytes by category, component and candidate op."""

from __future__ import annotations

from collections import defaultdict

from nasspeech.memory.allocator import round_size
from nasspeech.memory.records import Trace

_OUTSIDE_COMPONENTS = ("other", "classifier", "handovers")


def op_key(component: str, op: str | None) -> str:
    """``component/op``; allocations of a component outside its candidate ops (preprocessing,
    weighted sums, concatenation) are ``component/(cell glue)``."""
    if op:
        return f"{component}/{op}"
    return component if component in _OUTSIDE_COMPONENTS else f"{component}/(cell glue)"


def breakdown_at_peak(trace: Trace, framework_overhead: int | None = None
                      ) -> dict[str, dict[str, int]]:
    """Live bytes (rounded to the allocator's 512 B) by category, component and candidate op
    at the moment of peak allocation; ``framework_overhead`` (CUDA context and cuBLAS
    workspaces), if given, is listed last by category."""
    rounded = [round_size(a.nbytes) for a in trace.allocs]
    live = sum(rounded[i] for i in trace.initial)
    peak, peak_at = live, -1
    for k, e in enumerate(trace.events):
        live += rounded[e] if e >= 0 else -rounded[~e]
        if live > peak:
            peak, peak_at = live, k
    alive = set(trace.initial)
    for e in trace.events[: peak_at + 1]:
        if e >= 0:
            alive.add(e)
        else:
            alive.discard(~e)
    by_cat: dict[str, int] = defaultdict(int)
    by_comp: dict[str, int] = defaultdict(int)
    by_op: dict[str, int] = defaultdict(int)
    for i in alive:
        a = trace.allocs[i]
        by_cat[a.category] += rounded[i]
        by_comp[a.component] += rounded[i]
        by_op[op_key(a.component, a.op)] += rounded[i]
    ordered = lambda d: dict(sorted(d.items(), key=lambda kv: -kv[1]))
    categories = ordered(by_cat)
    if framework_overhead is not None:
        categories["framework_overhead"] = framework_overhead
    return {"by_category": categories, "by_component": ordered(by_comp),
            "by_op": ordered(by_op)}
