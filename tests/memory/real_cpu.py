"""An independent measurement of a real CPU step: the CPU allocator's own alloc/free events,
as ``torch.profiler`` (``profile_memory=True``) records them."""

from __future__ import annotations

from collections.abc import Callable

from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile


def profiled_allocations(step: Callable[[], object], kernel_ops: set[str]) -> dict:
    """Run ``step`` under the profiler and return its allocator events.

    Scratch that a kernel allocates and frees inside one call of an op that the trace sees as
    one dispatch (``kernel_ops``, e.g. ``aten::convolution``) is a backend detail (on CUDA it
    is the workspace the estimate models separately); such pairs are counted apart.
    Returns ``{"sequence": [+n / -n ...], "scratch_bytes": int, "scratch_count": int}``.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    roots = prof.profiler.kineto_results.experimental_event_tree()
    flat = []  # (time, +/-bytes, ptr, kernel-op event or None)

    def walk(event, kernel):
        if event.tag == _EventType.Allocation:
            f = event.extra_fields
            parent = event.parent
            in_op = parent is not None and parent.name.startswith("aten::")
            flat.append((event.start_time_ns, f.alloc_size, f.ptr, kernel, in_op))
            return
        if event.tag == _EventType.TorchOp and kernel is None and event.name in kernel_ops:
            kernel = event
        for child in event.children:
            walk(child, kernel)

    for root in roots:
        walk(root, None)
    flat.sort(key=lambda r: r[0])
    open_allocs: dict[int, tuple[int, object]] = {}
    outside: dict[int, int] = {}
    keep = [True] * len(flat)
    scratch_bytes = scratch_count = 0
    for i, (_, size, ptr, kernel, _n) in enumerate(flat):
        if size > 0 and not _n:
            keep[i] = False  # a Python scalar wrapped into a CPU tensor outside any aten op
            outside[ptr] = i
        elif size > 0:
            open_allocs[ptr] = (i, kernel)
        elif ptr in outside:
            keep[i] = False
            outside.pop(ptr)
        elif ptr in open_allocs:
            j, alloc_kernel = open_allocs.pop(ptr)
            if alloc_kernel is not None and alloc_kernel is kernel:
                keep[i] = keep[j] = False
                scratch_bytes += flat[j][1]
                scratch_count += 1
        else:
            keep[i] = False  # freed storage allocated before the profiled step
    sequence = [r[1] for k, r in zip(keep, flat) if k]
    return {"sequence": sequence,  "scratch_bytes": scratch_bytes, "scratch_count": scratch_count}
