"""Configurations that fit a GPU, ranked: what to give up so that a search runs.

Candidates, each estimated exactly (one trace each): drop the one, two or three costliest
ops of a component (by :mod:`~nasspeech.memory.per_op`), one node or one or two cells fewer,
partial channels K = 2 or 4 (PC-DARTS), and the largest batch that fits the unchanged space.
Fitting plans are ranked by how much of the search they keep: the product over components of
kept ops x kept edges x kept cells, divided by K, times the batch-size ratio.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nasspeech.config import SearchConfig
from nasspeech.memory.estimate import MemoryEstimate, evaluate
from nasspeech.memory.per_op import per_op_costs
from nasspeech.memory.profiles import GpuProfile, get_profile
from nasspeech.space.cells import edge_count
from nasspeech.space.config import SearchSpace


@dataclass
class Plan:
    description: str
    space: SearchSpace
    batch_size: int
    estimate: MemoryEstimate
    kept: float
    changes: dict[str, dict] = field(default_factory=dict)


def _kept(space: SearchSpace, base: SearchSpace, batch: int, base_batch: int) -> float:
    kept = batch / base_batch
    for comp, orig in zip(space.components, base.components):
        kept *= len(comp.ops) / len(orig.ops)
        kept *= edge_count(comp.nodes) / edge_count(orig.nodes)
        kept *= comp.cells / orig.cells
        kept /= comp.partial_channels
    return kept


def _candidates(space: SearchSpace, costs) -> list[tuple[str, dict]]:
    out: list[tuple[str, dict]] = []
    for comp in space.components:
        ranked = [c.op for c in costs if c.component == comp.name]
        for k in (1, 2, 3):
            if len(comp.ops) - k >= 2 and len(ranked) >= k:
                drop = ranked[:k]
                ops = [o for o in comp.ops if o not in drop]
                out.append((f"{comp.name}: drop {', '.join(drop)}", {comp.name: {"ops": ops}}))
        if comp.nodes > 1:
            out.append((f"{comp.name}: {comp.nodes - 1} nodes", {comp.name: {"nodes": comp.nodes - 1}}))
        for fewer in (1, 2):
            if comp.cells - fewer >= 1:
                change = {"cells": comp.cells - fewer}
                if comp.reductions is not None:
                    change["reductions"] = [r for r in comp.reductions if r < comp.cells - fewer]
                out.append((f"{comp.name}: {comp.cells - fewer} cells", {comp.name: change}))
        for k in (2, 4):
            if comp.partial_channels == 1 and comp.channels % k == 0:
                out.append((f"{comp.name}: partial channels K={k}",
                            {comp.name: {"partial_channels": k}}))
    return out


def plan(
    space: SearchSpace,
    batch_size: int,
    gpu: str | GpuProfile = "a100-40gb",
    search: SearchConfig | None = None,
    progress: Callable[[str], None] | None = None,
    limit: int | None = None,
    world_size: int = 1,
) -> tuple[MemoryEstimate, list[Plan]]:
    """The estimate of ``space`` as given and the fitting plans, best first.

    ``world_size``: a data-parallel search on that many GPUs; steps are traced at one
    process's slice of ``batch_size`` and plans' batch sizes stay global."""
    from nasspeech.memory.batch import BatchModel
    from nasspeech.memory.session import StepTracerSession
    from nasspeech.search.distributed import check_world, local_batch_size

    profile = get_profile(gpu)
    search = search or SearchConfig()
    check_world(batch_size, world_size, "the batch size")
    global_batch, batch_size = batch_size, local_batch_size(batch_size, world_size)
    say = progress or (lambda _m: None)
    say(f"tracing the configuration as given (batch {batch_size})")
    session = StepTracerSession(space, search)
    base_trace = session.trace(batch_size)
    base = evaluate(base_trace, profile, search.order)
    base.world_size = world_size
    plans: list[Plan] = []
    costs = per_op_costs(space, batch_size, profile, search, trace=base_trace)
    candidates = _candidates(space, costs)
    if limit is not None:
        candidates = candidates[:limit]
    for i, (text, changes) in enumerate(candidates, 1):
        say(f"[{i}/{len(candidates)}] {text}")
        try:
            variant = space.with_changes(**changes)
        except ValueError as exc:  # e.g. a change the space does not accept
            say(f"  skipped: {exc}")
            continue
        trace = StepTracerSession(variant, search).trace(batch_size)
        est = evaluate(trace, profile, search.order)
        plans.append(Plan(text, variant, global_batch, est,
                          _kept(variant, space, batch_size, batch_size), changes))
    say("fitting sizes against the batch size for a smaller-batch plan")
    model = BatchModel.fit(session, check=base_trace, progress=say)
    if model is not None:
        best = model.max_batch(profile)
        base.max_batch_size = best
        if 1 <= best < batch_size:
            trace = session.trace(best)
            est = evaluate(trace, profile, search.order)
            est.max_batch_size = best
            plans.append(Plan(f"batch size {best * world_size}", space, best * world_size,
                              est, _kept(space, space, best, batch_size)))
    fitting = [p for p in plans if p.estimate.fits]
    fitting.sort(key=lambda p: (-p.kept, p.estimate.total_bytes))
    return base, fitting
