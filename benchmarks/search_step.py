"""Time and peak memory of one DARTS search step, each setting in a fresh process.

    python benchmarks/search_step.py cnn            # the issue's CNN-only setting
    python benchmarks/search_step.py emodarts-small --order 2
    python benchmarks/search_step.py all --write benchmarks/results/search_step.md

Reports the median wall time (and process CPU time) of ``--steps`` steps after ``--warmup``
warm-up steps and the process's peak resident set size (ru_maxrss), as JSON lines.
``benchmarks/search_step_ratios.py`` runs it against another checkout, alternating.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

CNN_OPS = ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
           "dil_conv_5x5", "conv_7x1_1x7", "skip_connect", "none"]
SEQ_OPS = ["lstm_1", "lstm_2", "lstm_att_1", "rnn_1", "rnn_2", "rnn_att_1", "skip_connect",
           "none"]

SETTINGS = {
    # the reference setting: CNN component alone, 8 channels, 4 cells x 4 nodes
    "cnn": {"input_shape": (1, 128, 128), "batch": 16, "components": [
        {"name": "cnn", "family": "cnn", "ops": CNN_OPS, "cells": 4, "nodes": 4, "channels": 8}]},
    # the same supernet at a quarter of the input: the pytest-benchmark ratio guards
    "cnn-small": {"input_shape": (1, 64, 64), "batch": 8, "components": [
        {"name": "cnn", "family": "cnn", "ops": CNN_OPS, "cells": 4, "nodes": 4, "channels": 8}]},
    # the whole emoDARTS supernet (CNN + seq, joint) at a small setting
    "emodarts-small": {"input_shape": (1, 64, 64), "batch": 8, "components": [
        {"name": "cnn", "family": "cnn", "ops": CNN_OPS, "cells": 4, "nodes": 4, "channels": 8,
             "handover": "fold_frequency"},
        {"name": "seq", "family": "seq", "ops": SEQ_OPS, "cells": 2, "nodes": 3, "channels": 32,
             "handover": "mean_over_time"}]},
}


def setup(name: str, order: int, threads: int):
    """The supernet of setting ``name``, its Architect, weight optimiser and a training and a
    validation batch, at ``threads`` intra-op threads, seeded."""
    import torch

    from nasspeech.search import Architect
    from nasspeech.space import SearchSpace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = SETTINGS[name]
    space = SearchSpace(name=name, input_shape=s["input_shape"], num_classes=4,
                        components=s["components"])
    net = space.build_supernet()
    arch = Architect(net, order=order)
    opt = torch.optim.SGD(net.weight_parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    x = torch.randn(2 * s["batch"], *s["input_shape"])
    y = torch.randint(0, 4, (2 * s["batch"],))
    train, val = (x[: s["batch"]], y[: s["batch"]]), (x[s["batch"] :], y[s["batch"] :])
    return net, arch, opt, train, val


def run_context(recompute: bool = False) -> contextlib.ExitStack:
    """What a search run wraps its steps in: the CPU tensor cache and, with ``recompute``,
    ``search.recompute_depthwise`` (an older checkout without them gets neither)."""
    stack = contextlib.ExitStack()
    try:
        from nasspeech.kernels.cpu_cache import cached_cpu_memory
    except ImportError:
        return stack
    stack.enter_context(cached_cpu_memory())
    if recompute:
        from nasspeech.kernels.recompute import recompute_depthwise

        stack.enter_context(recompute_depthwise(True))
    return stack


def run_one(name: str, order: int, steps: int, warmup: int, threads: int,
            recompute: bool = False) -> dict:
    import torch

    import nasspeech
    from nasspeech.search import search_step

    s = SETTINGS[name]
    net, arch, opt, train, val = setup(name, order, threads)
    times, cpu, sys_s, faults = [], [], [], []
    with run_context(recompute):
        for i in range(warmup + steps):
            t0, c0, s0 = time.perf_counter(), time.process_time(), os.times().system
            f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            search_step(net, arch, opt, train, val, lr=0.025)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
                cpu.append(time.process_time() - c0)
                sys_s.append(os.times().system - s0)
                faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
    return {
        "setting": name, "order": order, "batch": s["batch"], "threads": threads,
        "step_s_median": round(statistics.median(times), 3), "step_s_all": [round(t, 3) for t in times],
        "cpu_s_median": round(statistics.median(cpu), 3),
        "sys_s_median": round(statistics.median(sys_s), 3),
        "page_faults_median": int(statistics.median(faults)),
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3),
        "torch": torch.__version__, "nasspeech": str(Path(nasspeech.__file__).parent.parent),
        "recompute_depthwise": recompute,
    }


def measure(name: str, order: int = 1, steps: int = 2, warmup: int = 1, threads: int = 2,
            tree: str | None = None, env: dict[str, str] | None = None,
            recompute: bool = False) -> dict:
    """Run one setting in a fresh interpreter so that its peak RSS is its own; ``tree``: the
    checkout whose ``nasspeech`` it imports (default: whatever the interpreter finds);
    ``env``: environment variables to set (e.g. ``NASSPEECH_CPU_CACHE``); ``recompute``:
    with ``search.recompute_depthwise``."""
    cmd = [sys.executable, __file__, name, "--order", str(order), "--steps", str(steps),
           "--warmup", str(warmup), "--threads", str(threads), "--inline"]
    if recompute:
        cmd.append("--recompute-depthwise")
    env = {**os.environ, **(env or {})}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(tree), *filter(None, [os.environ.get("PYTHONPATH")])])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("setting", choices=[*SETTINGS, "all"])
    p.add_argument("--order", type=int, default=1, choices=(1, 2))
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--recompute-depthwise", action="store_true",
                   help="recompute depthwise outputs in the backward (search.recompute_depthwise)")
    p.add_argument("--inline", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--write", type=Path, help="append a Markdown table of the results here")
    a = p.parse_args()
    if a.inline:
        print(json.dumps(run_one(a.setting, a.order, a.steps, a.warmup, a.threads,
                                 a.recompute_depthwise)))
        return
    jobs = [(n, o) for n in SETTINGS for o in (1, 2)] if a.setting == "all" else [(a.setting, a.order)]
    rows = []
    for name, order in jobs:
        row = measure(name, order, a.steps, a.warmup, a.threads,
                      recompute=a.recompute_depthwise)
        print(json.dumps(row), flush=True)
        rows.append(row)
    if a.write:
        lines = [(f"\n## {time.strftime('%Y-%m-%d %H:%M')} — {platform.processor() or platform.machine()}, "
                 f"{os.cpu_count()} cores, torch {rows[0]['torch']}\n"),
                 "| setting | order | batch | step time (median, s) | peak RSS (GB) |",
                 "|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['order']} | {r['batch']} | {r['step_s_median']} | "
                  f"{r['peak_rss_gb']} |" for r in rows]
        with a.write.open("a") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
