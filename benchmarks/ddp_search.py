"""Data-parallel search on this machine: wall time per epoch of the demo search
(examples/demo.yaml) in 1 and 2 processes, and the bytes all-reduced per search step.

    python benchmarks/ddp_search.py                      # prints the report
    python benchmarks/ddp_search.py --write benchmarks/results/ddp_search.md

Every search runs as ``nasspeech search`` in fresh processes (``--nproc 2`` for two) from the
repository root, one CPU thread per process unless a setting says otherwise, on the demo's
synthetic corpus (generated and cached on first use, before any timing). The time per epoch is
process 0's ``seconds`` in log.jsonl (steps, evaluation and checkpoint), median over the
epochs after the first. The bytes per step are the ``allreduce_bytes`` of an epoch divided by
its steps, next to what the gradient lists should add up to (4 bytes per float32 weight or
alpha, see docs/distributed.md). The machine's load (``uptime``) is recorded before and
after: the numbers are only as steady as the machine was.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "examples" / "demo.yaml"
#: (label, processes, threads per process)
TIMINGS = [("1 process, 1 thread", 1, 1), ("2 processes, 1 thread each", 2, 1),
           ("1 process, 2 threads", 1, 2)]
#: (label, search settings) of the communication-volume runs (2 processes, 1 epoch)
VOLUMES = [("order 1", {"order": 1}), ("order 2 (finite difference)", {"order": 2}),
           ("order 2 (exact HVP)", {"order": 2, "hvp": "exact"}),
           ("order 1, sync_batchnorm", {"order": 1, "sync_batchnorm": True})]


def load() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def config(tmp: Path, name: str, epochs: int, search: dict) -> Path:
    cfg = yaml.safe_load(DEMO.read_text())
    cfg["search"] = {**cfg["search"], "epochs": epochs, **search}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def search(cfg: Path, out: Path, nproc: int, threads: int) -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "nasspeech", "search", str(cfg), "--out", str(out),
           "--quiet", "--threads", str(threads)]
    if nproc > 1:
        cmd += ["--nproc", str(nproc)]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-2000:]}")
    return seconds, [json.loads(line) for line in (out / "log.jsonl").open()]


def steps_per_epoch(out: Path, batch_size: int) -> int:
    from nasspeech.workflow.datasets import BatchStream

    n = json.loads((out / "fold.json").read_text())["search_weights"]
    return len(BatchStream(torch.zeros(n), torch.zeros(n), range(n), batch_size, True))


def expected_bytes(search_cfg: dict) -> tuple[int, int, int]:
    """(weights, alphas, bytes a step should all-reduce) of the demo supernet."""
    from nasspeech.config import RunConfig

    run = RunConfig.load(DEMO)
    net = run.space.build_supernet()
    w = sum(p.numel() for p in net.weight_parameters())
    a = sum(p.numel() for p in net.alpha_parameters())
    metrics = 4 * 8  # loss, correct, count, alpha loss (float64)
    if search_cfg.get("order", 1) == 1:
        floats = a + w  # alpha gradient, weight gradient
    elif search_cfg.get("hvp") == "exact":
        floats = w + a + w  # virtual step, final alpha gradient, weight step
    else:  # virtual step, validation gradient (alphas + weights), 2 x HVP, weight step
        floats = w + (a + w) + 2 * a + w
    return w, a, 4 * floats + metrics


def step_seconds(batch: int, repeats: int = 6) -> float:
    """Median CPU time of one demo search step at ``batch`` in this process (1 thread): CPU
    seconds, which the other jobs on the machine change less than wall time."""
    from nasspeech.config import RunConfig
    from nasspeech.search.recipe import build_search

    torch.set_num_threads(1)
    run = RunConfig.load(DEMO)
    torch.manual_seed(0)
    recipe = build_search(run.search, run.space.build_supernet())
    x = torch.randn(batch, *run.space.input_shape)
    y = torch.randint(0, run.space.num_classes, (batch,))
    recipe.step((x, y), (x, y))  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.process_time()
        recipe.step((x, y), (x, y))
        times.append(time.process_time() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="demo search epochs (20)")
    parser.add_argument("--write", type=Path, default=None, help="write the Markdown here")
    args = parser.parse_args()

    lines: list[str] = []
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # the corpus and its features, generated and cached before any timing
        search(config(tmp, "warm", 1, {}), tmp / "warm", 1, 2)
        before = load()
        timed = []
        for label, nproc, threads in TIMINGS:
            cfg = config(tmp, f"t{nproc}{threads}", args.epochs, {})
            total, log = search(cfg, tmp / f"t{nproc}{threads}", nproc, threads)
            per_epoch = statistics.median(r["seconds"] for r in log[1:])
            timed.append((label, nproc, threads, per_epoch, total, log[-1]["val_acc"]))
            print(f"{label}: {per_epoch:.2f} s/epoch, {total:.1f} s in all", file=sys.stderr)
        volumes = []
        for label, settings in VOLUMES:
            cfg = config(tmp, f"v{len(volumes)}", 1, settings)
            out = tmp / f"v{len(volumes)}"
            _, log = search(cfg, out, 2, 1)
            steps = steps_per_epoch(out, yaml.safe_load(cfg.read_text())["search"]["batch_size"])
            w, a, expected = expected_bytes(settings)
            volumes.append((label, w, a, log[0]["allreduce_bytes"] / steps, expected))
            print(f"{label}: {log[0]['allreduce_bytes'] / steps:.0f} bytes/step", file=sys.stderr)
        full, half = step_seconds(32), step_seconds(16)
        after = load()

    base = timed[0][3]
    lines += [
        "# Data-parallel search: 1 vs 2 processes on this machine",
        "",
        (f"Measured {time.strftime('%Y-%m-%d %H:%M')} with `python benchmarks/ddp_search.py` "
         f"on {cpu_name()} ({os.cpu_count()} CPUs visible), torch {torch.__version__}, gloo. "
         f"The demo search (`examples/demo.yaml`, order 1, global batch 32, {steps} steps an "
         f"epoch, {args.epochs} epochs); s / epoch = process 0's `seconds` in log.jsonl "
         "(steps, evaluation, checkpoint), median over epochs 2..N; total = the whole command "
         "(process start-up and data loading included). No GPU was lent to this task: the "
         "1-GPU comparison is not measured."),
        "",
        f"- load before: `{before}`",
        f"- load after:  `{after}`",
        "",
        ("| setting | processes | threads each | s / epoch | vs 1 process, 1 thread | total s "
         "| val acc (last epoch) |"),
        "|---|---|---|---|---|---|---|",
    ]
    for label, nproc, threads, per_epoch, total, acc in timed:
        lines.append(f"| {label} | {nproc} | {threads} | {per_epoch:.2f} | "
                     f"{base / per_epoch:.2f}x | {total:.1f} | {acc:.3f} |")
    lines += [
        "",
        "## Bytes all-reduced per search step (2 processes, demo supernet)",
        "",
        ("Measured: `allreduce_bytes` of epoch 1 / its steps. Expected: 4 bytes per float of "
         "each gradient list the step sums (weights W, alphas A) plus 32 bytes of metrics; "
         "sync_batchnorm adds its statistics (2 x channels + 1 floats per BatchNorm and "
         "forward)."),
        "",
        "| step | weights W | alphas A | measured bytes / step | expected (gradients) |",
        "|---|---|---|---|---|",
    ]
    for label, w, a, measured, expected in volumes:
        lines.append(f"| {label} | {w:,} | {a:,} | {measured:,.0f} | {expected:,} |")
    lines += [
        "",
        "## What 2 processes could gain here",
        "",
        (f"CPU time of one demo search step in one process (1 thread, same session): "
         f"{full:.3f} s at the global batch 32, {half:.3f} s at a process's 16 "
         f"({half / full:.0%}; what does not halve is per-op cost that does not depend on the "
         f"batch), so two processes spend {2 * half / full:.2f}x the CPU of one. With two idle "
         f"cores they could at best run an epoch's steps {full / half:.2f}x as fast; with the "
         "cores shared with other jobs (the load above) they compete with each other for them "
         "and each all-reduce waits for the slower one."),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.write:
        from nasspeech.io import atomic_write

        atomic_write(args.write, text)


if __name__ == "__main__":
    main()
