"""``estimate()``: trace the search step, replay it through the allocator model, add the
device overheads, and report peak memory, whether it fits, and the largest batch."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from nasspeech.config import RunConfig, SearchConfig
from nasspeech.kernels.precision import check_precision
from nasspeech.memory import overheads
from nasspeech.memory.allocator import replay
from nasspeech.memory.breakdown import breakdown_at_peak
from nasspeech.memory.profiles import GpuProfile, get_profile
from nasspeech.memory.records import Trace
from nasspeech.space.config import SearchSpace, load_mapping
from nasspeech.space.loading import format_errors

Progress = Callable[[str], None]


@dataclass
class MemoryEstimate:
    """Predicted GPU memory of one search step. All sizes in bytes."""

    gpu: str
    capacity_bytes: int
    batch_size: int
    order: int
    peak_allocated_bytes: int
    peak_reserved_bytes: int
    framework_overhead_bytes: int
    conv_workspace_bytes: tuple[int, int]
    total_bytes: int
    fits: bool
    max_batch_size: int | None
    breakdown: dict[str, dict[str, int]]
    seconds: float = 0.0
    trace_events: int = 0
    notes: list[str] = field(default_factory=list)
    per_op: list[dict[str, Any]] | None = None  # marginal cost of each op (per_op=True)
    world_size: int = 1  # data-parallel processes: batch_size and every size are per GPU
    precision: str = "fp32"  # of the forward passes (search.precision)
    recompute_depthwise: bool = False  # search.recompute_depthwise

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["conv_workspace_bytes"] = list(self.conv_workspace_bytes)
        return data


class SpaceConfigError(ValueError):
    """A config whose space or search section does not validate: one line per field."""


def resolve_config(config: RunConfig | SearchSpace | str | Path,
                   data: dict[str, Any] | None = None) -> RunConfig:
    """The run config an estimate reads; a bare space (object or file) gets the default
    ``search:`` settings around it. The space is not checked against the ``data:`` section.

    A file is read once, or not at all if ``data`` (its mapping, which the command line has
    read for the ``imports:``) is given. Of a run config file, only the ``space:`` and
    ``search:`` sections are validated (the estimate reads no other); a problem raises
    :class:`SpaceConfigError` with one line per field (``space.components.0.cells: ...``).
    """
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, SearchSpace):
        return _around(config, SearchConfig())
    if data is None:
        data = load_mapping(config)
    try:
        if "space" in data and "components" not in data:  # a run config
            sections = _EstimateSections.model_validate(
                {"space": data["space"], "search": data.get("search") or {}})
            return _around(sections.space, sections.search)
        return _around(SearchSpace.model_validate(data), SearchConfig())
    except ValidationError as exc:
        raise SpaceConfigError(f"{config} does not validate:\n{format_errors(exc)}") from None


def _around(space: SearchSpace, search: SearchConfig) -> RunConfig:
    """A run config of ``space`` and ``search`` (other sections default), not checked against
    a ``data:`` section: an estimate needs no data."""
    return RunConfig.model_construct(space=space, search=search)


class _EstimateSections(BaseModel):
    """The run-config sections an estimate reads."""

    model_config = ConfigDict(extra="forbid")
    space: SearchSpace
    search: SearchConfig


def estimate(
    config: RunConfig | SearchSpace | str | Path,
    batch_size: int | None = None,
    gpu: str | GpuProfile | int = "a100-40gb",
    order: int | None = None,
    max_batch: bool = True,
    per_op: bool = False,
    progress: Progress | None = None,
    parallel: bool | None = None,
    world_size: int = 1,
    precision: str | None = None,
) -> MemoryEstimate:
    """Estimate the GPU memory of one search step of ``config`` (a run config, a space, or a
    file holding either).

    ``batch_size``, ``order`` and ``precision`` (fp32 | bf16) default to the config's
    ``search:`` section.
    ``max_batch=False`` skips the largest-batch search (one trace instead of two and a
    partial one);
    ``per_op=True`` adds what removing each candidate op saves (from the same trace).
    ``parallel``: the extra traces of the largest-batch search run in a forked process
    alongside the main trace when a CPU core is idle (``None``), always (``True``, on Linux)
    or never (``False``).
    ``world_size``: a data-parallel search on that many processes, one GPU each; the step is
    traced at one process's slice of the batch (the largest), so every size is per GPU.
    """
    from nasspeech.memory.batch import CHECK_PASSES, BatchModel, fit_and_check_batches
    from nasspeech.memory.fork import ForkedCall
    from nasspeech.memory.session import StepTracerSession

    start = time.perf_counter()
    run_config = resolve_config(config)
    space, search = run_config.space, run_config.search
    profile = get_profile(gpu)
    batch_size = int(batch_size or search.batch_size)
    per_gpu = _per_process(batch_size, world_size)
    batch_size = per_gpu.batch
    if order is not None and order != search.order:
        search = search.model_copy(update={"order": order})
    if precision is not None and precision != search.precision:
        search = search.model_copy(update={"precision": check_precision(precision)})
    say = progress or (lambda _msg: None)
    notes: list[str] = per_gpu.notes
    session = StepTracerSession(space, search, progress=progress)
    # the largest-batch fit needs two more traces; they run in a forked process, where a
    # CPU core is idle, while this one traces the requested batch
    second, third = fit_and_check_batches(batch_size)
    jobs = [second, (third, CHECK_PASSES)]
    background = session.trace_in_background(jobs, parallel) if max_batch else None
    if background is not None:
        say(f"tracing at batch {second} and {third} in a background process")
    say(f"tracing one order-{search.order} search step at batch {batch_size}")
    report = None
    try:
        traced = time.perf_counter()
        trace = session.trace(batch_size)
        if background is not None:
            # the background traces are as long as this one: on a machine that got busy,
            # wait for one no longer than tracing it here would take
            background.patience = max(1.0, time.perf_counter() - traced)
        # with a core to spare, the report's replay runs beside the largest-batch search
        report = ForkedCall(partial(evaluate, trace, profile, search.order)) \
            if background is not None else None
        max_bs = None
        if max_batch:
            model = BatchModel.line_to(session, trace, progress=say, background=background)
            if model is not None:  # searched while the check is traced in the background
                say("searching the largest batch through the allocator model")
                max_bs = model.max_batch(profile, parallel=background is not None)
            if model is None or not model.check_on(session, say, background):
                max_bs = None
                notes.append(
                    "sizes are not linear in the batch size; max_batch_size not computed")
        ok, result = report.result() if report is not None else (False, None)
        if not ok:
            result = evaluate(trace, profile, search.order)
    finally:
        if report is not None:
            report.close()
        if background is not None:
            background.close()
    result.max_batch_size = max_bs
    result.world_size = world_size
    if per_op:
        from nasspeech.memory.per_op import per_op_costs

        say("replaying the trace without each candidate op")
        costs = per_op_costs(space, batch_size, profile, search, trace=trace)
        result.per_op = [asdict(c) for c in costs]
    result.notes += notes
    result.seconds = round(time.perf_counter() - start, 3)
    return result


@dataclass
class _PerProcess:
    batch: int
    notes: list[str]


def _per_process(batch_size: int, world_size: int) -> _PerProcess:
    """One process's slice of a data-parallel batch and the notes that say so."""
    from nasspeech.search.distributed import check_world, local_batch_size

    if world_size == 1:
        return _PerProcess(batch_size, [])
    check_world(batch_size, world_size, "the batch size")
    local = local_batch_size(batch_size, world_size)
    note = (f"data-parallel over {world_size} processes: batch {local} per process of the "
            f"global {batch_size}; every size is per GPU and the largest batch is per process "
            f"(x {world_size} globally); the gradient all-reduce buffer (one copy of the "
            "weights' gradients) and NCCL's own memory are not included")
    return _PerProcess(local, [note])


def device_overheads(trace: Trace, profile: GpuProfile
                     ) -> tuple[list[int], int, tuple[int, int]]:
    """(cuBLAS workspaces inside the allocator, CUDA context outside it, conv workspace
    range)."""
    cublas = overheads.cublas_workspace(profile.hopper)
    context = overheads.CUDA_CONTEXT.value
    conv = [a.nbytes for a in trace.allocs if a.aten.startswith("convolution")]
    return cublas, context, (0, overheads.conv_workspace_high(max(conv, default=0)))


def evaluate(trace: Trace, profile: GpuProfile, order: int) -> MemoryEstimate:
    """Replay ``trace`` through the allocator model and assemble the estimate."""
    cublas, context, workspace = device_overheads(trace, profile)
    sizes = [a.nbytes for a in trace.allocs]
    result = replay(sizes, trace.events, trace.initial, None, preallocated=cublas)
    total = result.peak_reserved + context + workspace[1]
    fits, notes = total <= profile.capacity_bytes, []
    budget = profile.capacity_bytes - context - workspace[1]
    if not fits and result.peak_allocated <= budget:
        # with a full device the allocator releases its cached segments and retries
        capped = replay(sizes, trace.events, trace.initial, budget, preallocated=cublas)
        if not capped.oom:
            fits = True
            notes.append("fits only through the allocator's free-cache-and-retry path")
    breakdown = breakdown_at_peak(trace, framework_overhead=sum(cublas) + context)
    return MemoryEstimate(
        gpu=profile.name, capacity_bytes=profile.capacity_bytes, batch_size=trace.batch_size,
        order=order, peak_allocated_bytes=result.peak_allocated,
        peak_reserved_bytes=result.peak_reserved,
        framework_overhead_bytes=sum(cublas) + context,
        conv_workspace_bytes=workspace, total_bytes=total,
        fits=fits, max_batch_size=None, breakdown=breakdown,
        trace_events=len(trace.events), notes=notes,
        precision=trace.meta.get("precision", "fp32"),
        recompute_depthwise=bool(trace.meta.get("recompute_depthwise", False)),
    )
