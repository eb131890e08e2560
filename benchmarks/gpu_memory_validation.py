"""Predicted vs measured GPU memory of the search step, on a real CUDA device (issue #18, part 1).

    python benchmarks/gpu_memory_validation.py --out DIR          # on a CUDA machine
    python benchmarks/gpu_memory_validation.py --out DIR --dry-run  # CPU, tiny sizes: code paths only
    python benchmarks/gpu_report.py DIR                          # the Markdown report

For each configuration (emoDARTS at several batches, order 1 and 2; the CNN-only yardstick;
the sequential component alone; partial channels; a spread of small spaces) the estimate
(``nasspeech.memory.estimate``, computed here with this machine's torch) is compared with the
toolkit's real search step: one warm-up step, ``empty_cache``, peak reset, one measured step,
``torch.cuda.max_memory_allocated``/``max_memory_reserved``.

Largest batch: for emoDARTS at order 2 the largest batch is predicted for this device's own
capacity and checked with a real step at that batch (must not run out of memory) and at 5 %
more; then the allocator is capped with ``set_per_process_memory_fraction`` to what an
A100-40GB leaves it (its ``total_memory`` minus the CUDA context measured here) and the
``a100-40gb`` profile's answer is checked the same way, with the real largest batch between
the two found by bisection.

Writes ``DIR/validate.json`` (one record per measurement, rewritten after each) and
``DIR/memtrace.npz`` (the allocator's event stream of a few measured steps, to compare with
the estimator's trace offline). Without CUDA (and without ``--dry-run``) it says so and exits 0.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_common import (
    CNN_OPS,
    Device,
    Results,
    cnn_yardstick,
    emodarts_space,
    guarded,
    runs,
    seq_only,
    start,
    step_memory,
)

CNN_SMALL = ["max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "skip_connect", "none"]


def _small(name: str, cnn_ops: list[str], cells: int, nodes: int, channels: int,
           size: int = 32, seq: tuple | None = None):
    from nasspeech.space.config import SearchSpace

    comps = [{"name": "cnn", "family": "cnn", "ops": cnn_ops, "cells": cells, "nodes": nodes,
              "channels": channels, "handover": "fold_frequency" if seq else "auto"}]
    if seq:
        ops, s_cells, s_nodes, width = seq
        comps.append({"name": "seq", "family": "seq", "ops": ops, "cells": s_cells,
                      "nodes": s_nodes, "channels": width, "handover": "mean_over_time"})
    return SearchSpace.model_validate({"name": name, "input_shape": [1, size, size],
                                       "num_classes": 4, "components": comps})


def configs(dry: bool) -> list[tuple[str, str, Any, int, int, bool]]:
    """(name, group, space, batch, order, record the allocator's events), most important
    first (the first five: emoDARTS). A dry run keeps the first of each group."""
    emo = emodarts_space(dry)
    pc = emodarts_space(dry, partial_channels=4)
    out = [
        ("emodarts b8 o2", "emodarts", emo, 8, 2, True),
        ("emodarts b32 o2", "emodarts", emo, 32, 2, False),
        ("emodarts b64 o2", "emodarts", emo, 64, 2, False),
        ("emodarts b8 o1", "emodarts", emo, 8, 1, True),
        ("emodarts b64 o1", "emodarts", emo, 64, 1, False),
        ("cnn-yardstick b16 o1", "cnn-only", cnn_yardstick(dry), 16, 1, False),
        ("cnn-yardstick b16 o2", "cnn-only", cnn_yardstick(dry), 16, 2, False),
        ("cnn-yardstick b64 o2", "cnn-only", cnn_yardstick(dry), 64, 2, False),
        ("seq-only b64 o1", "seq-only", seq_only(dry), 64, 1, False),
        ("seq-only b64 o2", "seq-only", seq_only(dry), 64, 2, True),
        ("emodarts pc4 b64 o2", "partial-channels", pc, 64, 2, False),
        ("emodarts pc4 b64 o1", "partial-channels", pc, 64, 1, False),
    ]
    lstm = (["lstm_1", "lstm_2", "skip_connect", "none"], 1, 2, 32)
    rnn = (["rnn_1", "rnn_2", "rnn_3", "rnn_4", "skip_connect"], 2, 2, 32)
    att = (["lstm_att_1", "rnn_att_1", "skip_connect", "none"], 2, 3, 64)
    for order in (1, 2):
        out += [
            (f"cnn-small c2 n2 w8 b16 o{order}", "small", _small("a", CNN_SMALL, 2, 2, 8), 16,
             order, False),
            (f"cnn-all c4 n4 w16 b8 o{order}", "small", _small("c", CNN_OPS, 4, 4, 16), 8,
             order, False),
            (f"lstm c2 n2 + seq b16 o{order}", "small",
             _small("f", CNN_SMALL, 2, 2, 8, seq=lstm), 16, order, False),
            (f"rnn c3 n2 + seq b16 o{order}", "small",
             _small("g", CNN_SMALL, 3, 2, 8, seq=rnn), 16, order, False),
            (f"att c2 n3 + seq b8 o{order}", "small",
             _small("h", CNN_SMALL, 2, 3, 8, seq=att), 8, order, False),
        ]
    if dry:  # the first of each group (all kinds of space), at batch 2
        groups: dict[str, tuple] = {}
        for n, g, s, b, o, r in out:
            groups.setdefault(g, (n, g, s, 2, o, r))
        out = list(groups.values())
    return out


def predicted(space, batch: int, order: int, profile) -> dict[str, Any]:
    from nasspeech.memory import estimate

    t0 = time.perf_counter()
    est = estimate(space, batch, profile, order=order, max_batch=False)
    return {"pred_allocated": est.peak_allocated_bytes, "pred_reserved": est.peak_reserved_bytes,
            "pred_total": est.total_bytes, "pred_conv_workspace_max": est.conv_workspace_bytes[1],
            "estimate_s": round(time.perf_counter() - t0, 2)}


def compare(space, batch: int, order: int, profile, dev: Device, record: bool,
            traces: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    pred = predicted(space, batch, order, profile)
    meas = step_memory(space, batch, order, dev, record=record)
    events = meas.pop("events", None)
    if events is not None:
        traces[name] = np.asarray(events, dtype=np.int64).reshape(-1, 3)
    return {**pred, **meas}


def largest_batch(space, order: int, profiles: dict[str, Any], dev: Device) -> dict[str, Any]:
    """The predicted largest batch per profile, from one batch model (fit at 2, 3; checked
    on a whole trace at 5)."""
    from nasspeech.config import SearchConfig
    from nasspeech.memory.batch import BatchModel, StepTracerSession

    t0 = time.perf_counter()
    model = BatchModel.fit(StepTracerSession(space, SearchConfig(order=order)))
    if model is None:
        raise RuntimeError("sizes are not linear in the batch size: no largest batch")
    return {"predicted": {name: model.max_batch(p) for name, p in profiles.items()},
            "estimate_s": round(time.perf_counter() - t0, 2)}


def check_batch(space, order: int, batch: int, dev: Device, cap_bytes: int | None,
                dry_oom_above: int | None) -> dict[str, Any]:
    """A real step at ``batch`` with the allocator capped at ``cap_bytes`` (None: the whole
    device): does it run?"""
    total = dev.total_memory()
    if cap_bytes is not None and not dev.dry:
        torch.cuda.set_per_process_memory_fraction(min(1.0, cap_bytes / total))
    try:
        t0 = time.perf_counter()
        ok = runs(space, batch, order, dev, dry_oom_above)
        return {"batch": batch, "runs": ok, "seconds": round(time.perf_counter() - t0, 2)}
    finally:
        if cap_bytes is not None and not dev.dry:
            torch.cuda.set_per_process_memory_fraction(1.0)


def bisect_real(space, order: int, good: int, bad: int, dev: Device, cap: int | None,
                dry_oom_above: int | None, budget_s: float) -> dict[str, Any]:
    """The real largest batch in [good, bad) under ``cap`` (``good`` runs, ``bad`` does not),
    by bisection while ``budget_s`` lasts."""
    t0, tried = time.perf_counter(), []
    while bad - good > 1 and time.perf_counter() - t0 < budget_s:
        mid = (good + bad) // 2
        ok = check_batch(space, order, mid, dev, cap, dry_oom_above)["runs"]
        tried.append([mid, ok])
        good, bad = (mid, bad) if ok else (good, mid)
    return {"real_max_at_least": good, "real_max_below": bad, "exact": bad - good == 1,
            "tried": tried}


def main(argv: list[str] | None = None) -> int:
    def more_args(p: argparse.ArgumentParser) -> None:
        p.add_argument("--context-bytes", type=int, default=None,
                       help="the CUDA context measured by gpu_constants.py (else measured here)")
        p.add_argument("--steps", default="emodarts,a100-o2,others,device-o2,a100-o1",
                       help="what to measure, in this order (default: all of it)")
        p.add_argument("--device-o2-batch", type=int, default=None,
                       help="the largest batch an earlier run predicted for this device at "
                            "order 2 (skips that prediction)")
        p.add_argument("--budget-s", type=float, default=1e9,
                       help="start no new measurement after this many seconds")
        p.add_argument("--alone-after", type=Path, default=None,
                       help="a file that appears when other users of the device are done "
                            "(the whole-device largest-batch check waits for it)")

    started = start("gpu_memory_validation", __doc__, "validate.json", argv, more_args)
    if started is None:
        return 0
    a, dev, results = started
    from nasspeech.memory.profiles import PROFILES, GpuProfile

    traces: dict[str, np.ndarray] = {}
    if not dev.dry:
        torch.zeros(1, device="cuda")
    total = dev.total_memory()
    context = a.context_bytes if a.context_bytes is not None else dev.used_outside_allocator()
    # this device's own profile: the capacity torch reports, Hopper cuBLAS workspace
    hopper = not dev.dry and torch.cuda.get_device_capability(0)[0] >= 9
    here = GpuProfile("this-device", total, "this device", "torch total_memory", hopper)
    results.add({"kind": "setup", "total_memory": total, "context_bytes": context,
                 "dry_run": dev.dry})

    todo = configs(dev.dry)
    first = 1 if dev.dry else 5  # the emoDARTS configurations
    deadline = time.perf_counter() + a.budget_s
    cap_a100 = PROFILES["a100-40gb"].capacity_bytes - context  # what an A100-40GB leaves

    def in_time(what: str) -> bool:
        if time.perf_counter() < deadline:
            return True
        results.add({"kind": "skipped", "name": what, "why": f"--budget-s {a.budget_s}"})
        return False

    def compare_all(items: list) -> None:
        for name, group, space, batch, order, record in items:
            if in_time(name):
                _compare_one(results, traces, a.out, dev, here, name, group, space, batch,
                             order, record)

    predicted: dict[int, dict[str, int] | None] = {}

    def prediction(order: int) -> dict[str, int] | None:
        if order not in predicted:
            predicted[order] = _predict_batches(results, dev, here, order)
        return predicted[order]

    def a100(order: int) -> None:
        if in_time(f"largest batch under an A100-40GB cap, order {order}"):
            pred = prediction(order)
            if pred is not None:
                _check(results, dev, order, "a100-40gb", pred["a100-40gb"], cap_a100)

    def device_o2() -> None:
        if not in_time("largest batch on this device, order 2"):
            return
        # the whole device: wait (while the budget lasts) for other users of it to finish
        while (a.alone_after and not a.alone_after.exists() and not dev.dry
               and time.perf_counter() < deadline - 40):
            time.sleep(2)
        if a.device_o2_batch is not None:  # predicted by an earlier run of this script
            results.add({"kind": "max_batch", "space": "emodarts", "order": 2,
                         "dry_run": dev.dry, "part": "prediction", "predicted":
                         {"this-device": a.device_o2_batch}, "from": "--device-o2-batch"})
            best = a.device_o2_batch
        else:
            pred = prediction(2)
            if pred is None:
                return
            best = pred["this-device"]
        _check(results, dev, 2, "this-device", best, None, context)

    steps = {"emodarts": lambda: compare_all(todo[:first]), "a100-o2": lambda: a100(2),
             "others": lambda: compare_all(todo[first:]), "device-o2": device_o2,
             "a100-o1": lambda: a100(1)}
    for step in a.steps.split(","):
        steps[step]()
    print(f"gpu_memory_validation: wrote {results.path}")
    return 0


def _compare_one(results: Results, traces: dict[str, np.ndarray], out: Path, dev: Device,
                 here: Any, name: str, group: str, space: Any, batch: int, order: int,
                 record: bool) -> None:
    guarded(results, {"kind": "compare", "name": name, "group": group, "batch": batch,
                      "order": order, "dry_run": dev.dry},
            compare, space, batch, order, here, dev, record, traces, name)
    if record and name in traces:
        _save_traces(out / "memtrace.npz", traces)


def _predict_batches(results: Results, dev: Device, here: Any, order: int
                     ) -> dict[str, int] | None:
    """emoDARTS's predicted largest batch at ``order`` on this device and an A100-40GB."""
    from nasspeech.memory.profiles import PROFILES

    base = {"kind": "max_batch", "space": "emodarts", "order": order, "dry_run": dev.dry}
    try:
        pred = largest_batch(emodarts_space(dev.dry), order,
                             {"this-device": here, "a100-40gb": PROFILES["a100-40gb"]}, dev)
    except Exception as exc:  # noqa: BLE001 - recorded
        results.add({**base, "error": f"{type(exc).__name__}: {exc}"[:2000]})
        return None
    results.add({**base, "part": "prediction", **pred})
    return pred["predicted"]


def _check(results: Results, dev: Device, order: int, profile: str, best: int,
           cap: int | None, context: int | None = None) -> None:
    """A real emoDARTS step at the predicted largest batch ``best`` and at 5 % more, with
    the allocator capped at ``cap`` bytes (None: the whole device; then the device memory
    other processes hold is recorded); under a cap, the real largest batch in between by
    bisection."""
    space = emodarts_space(dev.dry)
    if dev.dry:
        best = min(best, 2)  # the code path, at a size a CPU runs quickly
    row: dict[str, Any] = {"kind": "max_batch", "space": "emodarts", "order": order,
                           "dry_run": dev.dry, "part": "check", "profile": profile,
                           "cap_bytes": cap, "predicted": best}
    if cap is None and context is not None:
        row["others_bytes"] = dev.used_outside_allocator() - context
    if best < 1:
        results.add({**row, "error": "no batch predicted to fit"})
        return
    over = max(best + 1, math.ceil(best * 1.05))
    dry_limit = best if dev.dry else None  # dry: 5 % more "runs out"
    t0 = time.perf_counter()
    try:
        at = check_batch(space, order, best, dev, cap, dry_limit)
        row.update(runs=at["runs"], step_pair_s=at["seconds"])
        above = check_batch(space, order, over, dev, cap, dry_limit)
        row.update(plus5=over, plus5_runs=above["runs"])
        if cap is not None and at["runs"] and not above["runs"]:
            row.update(bisect_real(space, order, best, over, dev, cap, dry_limit,
                                   budget_s=20.0))
    except Exception as exc:  # noqa: BLE001 - recorded
        row["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    row["wall_s"] = round(time.perf_counter() - t0, 2)
    results.add(row)


def _save_traces(path: Path, traces: dict[str, np.ndarray]) -> None:
    import io

    from nasspeech.io import atomic_write

    buf = io.BytesIO()
    np.savez_compressed(buf, **{_key(k): v for k, v in traces.items()})
    atomic_write(path, buf.getvalue())


def _key(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


if __name__ == "__main__":
    sys.exit(main())
