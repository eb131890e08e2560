"""Configurations that fit a GPU, ranked: what to give up so that a search runs.

Candidates, each estimated exactly (one trace each): drop the one, two or three costliest
ops of a component (by :mod:`~nasspeech.memory.per_op`), one node or one or two cells fewer,
partial channels K = 2 or 4 (PC-DARTS), bf16 autocast (``search.precision``, where the
config is fp32), recomputed depthwise outputs (``search.recompute_depthwise``, where it is
off), and the largest batch that fits the unchanged space.
Fitting plans are ranked by how much of the search they keep: the product over components of
kept ops x kept edges x kept cells, divided by K, times the batch-size ratio (bf16 and
recomputation keep the whole search: they change the arithmetic or the time, not the space).

The traces and replays after the first are independent: where a core is idle they are
shared among forked copies of the process (:func:`~nasspeech.memory.fork.fork_map`, which
inherit the first trace and the tracer's warm caches), and each result is reported as it
comes, with the best plan so far. The largest-batch plan is estimated from the checked
linear model of the sizes (:meth:`~nasspeech.memory.batch.BatchModel.trace_at`) instead of
a fourth trace. The result does not depend on how many processes shared the work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from nasspeech.config import SearchConfig
from nasspeech.memory.estimate import MemoryEstimate, evaluate
from nasspeech.memory.per_op import per_op_costs
from nasspeech.memory.profiles import GpuProfile, get_profile
from nasspeech.memory.records import Trace
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


@dataclass(frozen=True)
class _Job:
    """One piece of the planner's work after the first trace."""

    kind: str  # "candidate" or "batch"
    text: str = ""
    changes: dict[str, dict] = field(default_factory=dict)
    search: tuple[tuple[str, object], ...] = ()  # search settings a candidate changes


def _candidate_jobs(space: SearchSpace, costs, search: SearchConfig) -> list[_Job]:
    jobs = [_Job("candidate", text, changes) for text, changes in _candidates(space, costs)]
    if search.precision == "fp32":
        jobs.append(_Job("candidate", "precision bf16 (autocast)", search=(("precision", "bf16"),)))
    if not search.recompute_depthwise:
        jobs.append(_Job("candidate", "recompute depthwise outputs (+~10 % time)",
                         search=(("recompute_depthwise", True),)))
    return jobs


def _run(job: _Job, space: SearchSpace, search: SearchConfig, session, base_trace: Trace,
         batch_size: int, profile: GpuProfile) -> tuple:
    """What one job finds: ``("plan", estimate)``, ``("skipped", why)`` for a change the
    space does not accept, or ``("batch", largest batch, estimate there or None)``."""
    from nasspeech.memory.batch import BatchModel
    from nasspeech.memory.session import StepTracerSession

    if job.kind == "batch":
        model = BatchModel.fit(session, check=base_trace)
        if model is None:
            return ("batch", None, None)
        best = model.max_batch(profile)
        est = None
        if 1 <= best < batch_size:
            est = evaluate(model.trace_at(best), profile, search.order)
            est.max_batch_size = best
        return ("batch", best, est)
    try:
        variant = space.with_changes(**job.changes) if job.changes else space
    except ValueError as exc:  # e.g. a change the space does not accept
        return ("skipped", str(exc))
    variant_search = search.model_copy(update=dict(job.search)) if job.search else search
    trace = StepTracerSession(variant, variant_search).trace(batch_size)
    return ("plan", evaluate(trace, profile, search.order))


def plan(
    space: SearchSpace,
    batch_size: int,
    gpu: str | GpuProfile = "a100-40gb",
    search: SearchConfig | None = None,
    progress: Callable[[str], None] | None = None,
    limit: int | None = None,
    parallel: bool | None = None,
    world_size: int = 1,
) -> tuple[MemoryEstimate, list[Plan]]:
    """The estimate of ``space`` as given and the fitting plans, best first.

    ``parallel``: share the work among forked processes where a core is idle (``None``),
    as many as there are cores (``True``), or not (``False``); the result is the same.
    ``world_size``: a data-parallel search on that many GPUs; steps are traced at one
    process's slice of ``batch_size`` and plans' batch sizes stay global."""
    from nasspeech.memory.fork import cpu_times, fork_map, fork_workers
    from nasspeech.memory.session import StepTracerSession
    from nasspeech.search.distributed import check_world, local_batch_size

    profile = get_profile(gpu)
    search = search or SearchConfig()
    check_world(batch_size, world_size, "the batch size")
    batch_size = local_batch_size(batch_size, world_size)
    say = progress or (lambda _m: None)
    mark = cpu_times()
    say(f"tracing the configuration as given (batch {batch_size})")
    session = StepTracerSession(space, search)
    base_trace = session.trace(batch_size)
    base = evaluate(base_trace, profile, search.order)
    base.world_size = world_size
    workers = fork_workers(mark, parallel)
    shared = f" in {workers} processes" if workers > 1 else ""
    say(f"ranking the ops by what removing each saves{shared}")
    costs = per_op_costs(space, batch_size, profile, search, trace=base_trace, workers=workers)
    candidates = _candidate_jobs(space, costs, search)
    if limit is not None:
        candidates = candidates[:limit]
    # the batch fit (two traces) first: the longest job
    jobs = [_Job("batch"), *candidates]
    say(f"estimating {len(candidates)} candidates and the largest batch{shared}")
    found: dict[int, tuple] = {}
    made: dict[int, Plan | None] = {}
    best: Plan | None = None
    for i, ok, value in fork_map(lambda job: _run(job, space, search, session, base_trace,
                                                   batch_size, profile), jobs, workers):
        job = jobs[i]
        if not ok:
            raise RuntimeError(f"planning {job.text or 'the largest batch'}: {value}")
        found[i], made[i] = value, _plan_of(job, value, space, batch_size, world_size)
        p = made[i]
        if p is not None and p.estimate.fits and (best is None or _rank(p) < _rank(best)):
            best = p
        say(_progress_line(len(found), len(jobs), job, value, best))
    base.max_batch_size = found[0][1]
    # the candidates in their order, then the smaller batch: as the serial planner had them
    plans = [made[i] for i in [*range(1, len(jobs)), 0] if made[i] is not None]
    fitting = [p for p in plans if p.estimate.fits]
    fitting.sort(key=_rank)
    return base, fitting


def _rank(p: Plan) -> tuple[float, int]:
    return (-p.kept, p.estimate.total_bytes)


def _plan_of(job: _Job, value: tuple, space: SearchSpace, batch_size: int,
             world_size: int = 1) -> Plan | None:
    """The plan a job's result makes; batch sizes global (``world_size`` times the per-process
    ``batch_size`` the traces ran at)."""
    if value[0] == "skipped":
        return None
    if value[0] == "batch":
        best, est = value[1], value[2]
        if est is None:
            return None
        return Plan(f"batch size {best * world_size}", space, best * world_size, est,
                    _kept(space, space, best, batch_size))
    variant = space.with_changes(**job.changes) if job.changes else space
    changes = dict(job.changes) or ({"search": dict(job.search)} if job.search else {})
    return Plan(job.text, variant, batch_size * world_size, value[1],
                _kept(variant, space, batch_size, batch_size), changes)


def _progress_line(done: int, total: int, job: _Job, value: tuple, best: Plan | None) -> str:
    from nasspeech.memory.report import fmt_bytes

    if value[0] == "skipped":
        what = f"{job.text}: skipped ({value[1]})"
    elif value[0] == "batch":
        what = (f"largest batch: {value[1]}" if value[1] is not None
                else "largest batch: sizes not linear in the batch size")
    else:
        est = value[1]
        what = (f"{job.text}: {fmt_bytes(est.total_bytes)}, "
                f"{'fits' if est.fits else 'does not fit'}")
    lead = (f"; best so far: {best.description} (keeps {100 * best.kept:.1f}%, "
            f"{fmt_bytes(best.estimate.total_bytes)})" if best is not None else "")
    return f"[{done}/{total}] {what}{lead}"
