"""Human-readable tables for memory estimates."""

from __future__ import annotations

from nasspeech.memory.estimate import MemoryEstimate

GiB = 1024**3
MiB = 1024**2


def fmt_bytes(n: int) -> str:
    if abs(n) >= GiB:
        return f"{n / GiB:.2f} GiB"
    if abs(n) >= MiB:
        return f"{n / MiB:.1f} MiB"
    return f"{n / 1024:.1f} KiB" if abs(n) >= 1024 else f"{n} B"


def _table(title: str, rows: dict[str, int], limit: int = 12) -> list[str]:
    total = sum(rows.values())
    lines = [f"{title:<28} {'bytes':>12} {'share':>6}"]
    items = list(rows.items())
    for name, n in items[:limit]:
        share = f"{100 * n / total:5.1f}%" if total else "  -"
        lines.append(f"  {name:<26} {fmt_bytes(n):>12} {share:>6}")
    if len(items) > limit:
        rest = sum(n for _, n in items[limit:])
        lines.append(f"  {'(' + str(len(items) - limit) + ' more)':<26} {fmt_bytes(rest):>12}")
    return lines


def render(est: MemoryEstimate) -> str:
    """The estimate as a plain-text report."""
    verdict = "FITS" if est.fits else "DOES NOT FIT"
    ws_lo, ws_hi = est.conv_workspace_bytes
    lines = [
        (f"GPU memory estimate: {est.gpu} ({fmt_bytes(est.capacity_bytes)}), batch "
         f"{est.batch_size}, order {est.order}, {est.precision}"
         + (", depthwise outputs recomputed" if est.recompute_depthwise else "")),
        "",
        f"  peak allocated (tensors)      {fmt_bytes(est.peak_allocated_bytes):>12}",
        f"  peak reserved (allocator)     {fmt_bytes(est.peak_reserved_bytes):>12}",
        (f"  + CUDA context (outside)      {fmt_bytes(est.framework_overhead_bytes):>12}"
         "   (incl. cuBLAS workspace)"),
        f"  + cuDNN conv workspace        {fmt_bytes(ws_lo):>7} .. {fmt_bytes(ws_hi)}",
        f"  = total device memory         {fmt_bytes(est.total_bytes):>12}   -> {verdict}",
        (f"  largest batch that fits       "
         f"{est.max_batch_size if est.max_batch_size is not None else 'n/a':>12}"),
        "",
    ]
    names = {"by_category": "at peak, by category", "by_component": "at peak, by component",
             "by_op": "at peak, by candidate op"}
    for key, title in names.items():
        lines += _table(title, est.breakdown[key]) + [""]
    if est.per_op:
        lines.append(f"{'what removing an op saves':<36} {'allocated':>10} {'reserved':>10}")
        for c in est.per_op:
            lines.append(f"  {c['component'] + '/' + c['op']:<34} "
                         f"{fmt_bytes(c['saves_allocated_bytes']):>10} "
                         f"{fmt_bytes(c['saves_reserved_bytes']):>10}")
        lines.append("")
    lines.append(f"({est.trace_events} allocator events traced in {est.seconds:.1f} s; "
                 "device constants measured on an H200, see docs/memory.md)")
    lines += [f"note: {n}" for n in est.notes]
    return "\n".join(lines)
