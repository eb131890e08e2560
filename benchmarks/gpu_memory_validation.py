"""Predicted vs measured GPU memory of the search step, on a real CUDA device.

    python benchmarks/gpu_memory_validation.py            # all configs, writes the report
    python benchmarks/gpu_memory_validation.py --quick    # the first 6 configs
    pytest benchmarks/gpu_memory_validation.py            # same, as a test (skips without CUDA)

For each configuration the toolkit's ``search_step`` runs on CUDA (after a warm-up step and
``empty_cache``); ``torch.cuda.max_memory_allocated``/``max_memory_reserved`` are compared
with ``nasspeech.memory.estimate``. The max-batch check limits the allocator with
``set_per_process_memory_fraction`` and verifies that the predicted largest batch runs and
that 5 % more runs out of memory. It also measures the CUDA context (device memory in use
that the allocator does not own), the constant ``overheads.CUDA_CONTEXT`` stands for.
Writes ``benchmarks/results/memory_validation.md``. Without CUDA it says so and exits 0.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "memory_validation.md"

CNN = ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
       "dil_conv_5x5", "conv_7x1_1x7", "skip_connect", "none"]
CNN_SMALL = ["max_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "skip_connect", "none"]
SEQ_ALL = ["lstm_1", "lstm_2", "lstm_3", "lstm_4", "lstm_att_1", "lstm_att_2", "rnn_1", "rnn_2",
           "rnn_3", "rnn_4", "rnn_att_1", "rnn_att_2", "skip_connect", "none"]


def _space(name, cnn_ops, cells, nodes, channels, size=32, seq=None):
    from nasspeech.space.config import SearchSpace

    comps = [{"name": "cnn", "family": "cnn", "ops": cnn_ops, "cells": cells, "nodes": nodes,
              "channels": channels, "handover": "fold_frequency" if seq else "auto"}]
    if seq:
        ops, s_cells, s_nodes, width = seq
        comps.append({"name": "seq", "family": "seq", "ops": ops, "cells": s_cells,
                      "nodes": s_nodes, "channels": width, "handover": "mean_over_time"})
    return SearchSpace.model_validate({"name": name, "input_shape": [1, size, size],
                                       "num_classes": 4, "components": comps})


def configs() -> list[tuple[str, object, int, int]]:
    """(name, space, batch, order): >= 20 settings over op sets, cells, nodes, widths, batch."""
    out = []
    for order in (1, 2):
        out += [
            (f"cnn-small c2 n2 w8 o{order}", _space("a", CNN_SMALL, 2, 2, 8), 16, order),
            (f"cnn-all c3 n3 w8 o{order}", _space("b", CNN, 3, 3, 8), 16, order),
            (f"cnn-all c4 n4 w16 o{order}", _space("c", CNN, 4, 4, 16), 8, order),
            (f"cnn-small c8 n2 w8 o{order}", _space("d", CNN_SMALL, 8, 2, 8), 8, order),
            (f"cnn-small c5 n4 w12 b32 o{order}", _space("e", CNN_SMALL, 5, 4, 12), 32, order),
            (f"lstm c2 n2 + seq(lstm_1,2) o{order}",
             _space("f", CNN_SMALL, 2, 2, 8, seq=(["lstm_1", "lstm_2", "skip_connect", "none"], 1, 2, 32)),
             16, order),
            (f"rnn c3 n2 + seq(rnn_1..4) o{order}",
             _space("g", CNN_SMALL, 3, 2, 8, seq=(["rnn_1", "rnn_2", "rnn_3", "rnn_4", "skip_connect"], 2, 2, 32)),
             16, order),
            (f"att c2 n3 + seq(att) o{order}",
             _space("h", CNN_SMALL, 2, 3, 8, seq=(["lstm_att_1", "rnn_att_1", "skip_connect", "none"], 2, 3, 64)),
             8, order),
            (f"emodarts-like c4 n4 w16 + seq(all) o{order}",
             _space("i", CNN, 4, 4, 16, size=64, seq=(SEQ_ALL, 2, 3, 64)), 8, order),
            (f"emodarts-like c2 n2 w8 + seq(all) b32 o{order}",
             _space("j", CNN, 2, 2, 8, seq=(SEQ_ALL, 1, 2, 32)), 32, order),
            (f"cnn-all c6 n3 w8 b4 o{order}", _space("k", CNN, 6, 3, 8), 4, order),
        ]
    return out


def measure(space, batch: int, order: int) -> tuple[int, int]:
    from nasspeech.memory.setup import SearchHyper, make_setup

    torch.manual_seed(0)
    with torch.device("cuda"):
        setup = make_setup(space.build_supernet(), space, batch, SearchHyper(order=order))
    setup.run()  # warm-up: optimiser state, leftover gradients, cuBLAS/cuDNN handles
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    setup.run()
    torch.cuda.synchronize()
    result = torch.cuda.max_memory_allocated(), torch.cuda.max_memory_reserved()
    del setup
    torch.cuda.empty_cache()
    return result


def runs(space, batch: int, order: int) -> bool:
    try:
        measure(space, batch, order)
        return True
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return False


def max_batch_check(space, order: int, allowed_bytes: int) -> dict:
    """Predicted largest batch under an allocator limit; does it run, does +5 % OOM?"""
    from nasspeech.memory import overheads
    from nasspeech.memory.batch import BatchModel, StepTracerSession
    from nasspeech.memory.profiles import custom_profile
    from nasspeech.memory.setup import SearchHyper

    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(allowed_bytes / total)
    try:
        model = BatchModel.fit(StepTracerSession(space, SearchHyper(order=order)))
        profile = custom_profile(allowed_bytes + overheads.CUDA_CONTEXT.value, "limited")
        best = model.max_batch(profile)
        over = max(best + 1, math.ceil(best * 1.05))
        return {"predicted": best, "runs": runs(space, best, order),
                "plus5": over, "plus5_ooms": not runs(space, over, order)}
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)


def context_bytes() -> int:
    free, total = torch.cuda.mem_get_info()
    return total - free - torch.cuda.memory_reserved()


def main(quick: bool = False) -> int:
    if not torch.cuda.is_available():
        print("gpu_memory_validation: no CUDA device; nothing measured (skipped).")
        return 0
    from nasspeech.memory import estimate
    from nasspeech.memory.profiles import custom_profile

    torch.zeros(1, device="cuda")
    ctx = context_bytes()
    name = torch.cuda.get_device_name(0)
    total = torch.cuda.get_device_properties(0).total_memory
    profile = custom_profile(total, name)
    rows = []
    for label, space, batch, order in configs()[: 6 if quick else None]:
        t0 = time.perf_counter()
        est = estimate(space, batch, profile, order=order, max_batch=False)
        t_est = time.perf_counter() - t0
        alloc, reserved = measure(space, batch, order)
        rows.append((label, batch, order, est.peak_allocated_bytes, alloc,
                     est.peak_reserved_bytes, reserved, t_est))
        print(f"{label}: alloc {est.peak_allocated_bytes} vs {alloc}, "
              f"reserved {est.peak_reserved_bytes} vs {reserved}", flush=True)
    checks = [
        ("cnn-small c2 n2 w8 o1", _space("a", CNN_SMALL, 2, 2, 8), 1, 2 * 1024**3),
        ("lstm c2 n2 o2", _space("f", CNN_SMALL, 2, 2, 8,
                                 seq=(["lstm_1", "lstm_2", "skip_connect", "none"], 1, 2, 32)),
         2, 2 * 1024**3),
    ]
    check_rows = [(label, max_batch_check(space, order, allowed))
                  for label, space, order, allowed in checks]
    write(name, ctx, rows, check_rows)
    return 0


def _err(pred: int, meas: int) -> float:
    return 100.0 * (pred - meas) / meas if meas else float("nan")


def write(device: str, ctx: int, rows: list, checks: list) -> None:
    err_a = [abs(_err(r[3], r[4])) for r in rows]
    err_r = [abs(_err(r[5], r[6])) for r in rows]
    mib = 1024**2
    lines = [
        "# GPU memory: predicted vs measured",
        "",
        (f"Device: {device}; torch {torch.__version__}; CUDA context measured "
        f"{ctx / mib:.0f} MiB (constant in overheads.py: see docs/memory.md)."),
        "",
        (f"Median |error|: allocated {statistics.median(err_a):.2f} %, reserved "
        f"{statistics.median(err_r):.2f} % (targets 2 % / 5 %)."),
        "",
        ("| config | batch | order | pred. alloc MiB | meas. alloc MiB | err % | "
        "pred. reserved MiB | meas. reserved MiB | err % | estimate s |"),
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for label, b, o, pa, ma, pr, mr, t in rows:
        lines.append(f"| {label} | {b} | {o} | {pa / mib:.1f} | {ma / mib:.1f} | "
                     f"{_err(pa, ma):+.2f} | {pr / mib:.1f} | {mr / mib:.1f} | "
                     f"{_err(pr, mr):+.2f} | {t:.1f} |")
    lines += ["", "## Largest batch under an allocator limit", "",
              "| config | predicted max | runs | +5 % batch | +5 % runs out of memory |",
              "|---|---|---|---|---|"]
    for label, c in checks:
        lines.append(f"| {label} | {c['predicted']} | {c['runs']} | {c['plus5']} | "
                     f"{c['plus5_ooms']} |")
    RESULT.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULT}")


def test_gpu_memory_validation() -> None:
    import pytest

    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    assert main() == 0


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv))
