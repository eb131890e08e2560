"""Wall time of ``nasspeech estimate`` and ``nasspeech plan`` as new processes (issue #16,
targets 4 and 5), with the imports' share, and the planner shared among processes vs not.

    python benchmarks/estimate_startup.py                 # print the numbers
    python benchmarks/estimate_startup.py --plan-modes    # + plan() in 1 and in 2 processes
    python benchmarks/estimate_startup.py --write         # + update the results file

Every number comes with the machine's load (the 1-minute load average and the CPU pressure
from ``/proc/pressure/cpu``) just before and after it: the machine is shared, and a busy one
makes everything slower. Targets: the estimate command <= 10 s and the plan command <= 60 s
on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "emodarts.yaml"
RESULT = ROOT / "benchmarks" / "results" / "memory_estimate_speed.md"
SECTION = "## New processes: `nasspeech estimate` and `nasspeech plan` (issue #16)"
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def load() -> str:
    """The 1-minute load average and the 10-second CPU pressure, as text."""
    avg = Path("/proc/loadavg").read_text().split()[0]
    try:
        pressure = Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
        return f"load {avg}, cpu pressure {pressure} %"
    except (OSError, IndexError):
        return f"load {avg}"


def command(*args: str) -> tuple[float, str, str, str, str]:
    """(wall seconds, stdout, stderr, load before, load after) of ``nasspeech ARGS``."""
    before = load()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nasspeech", *args], capture_output=True,
                          text=True, check=True, cwd=ROOT, env=ENV)
    return time.perf_counter() - start, done.stdout, done.stderr, before, load()


def import_seconds() -> float:
    """Seconds of imports in ``nasspeech estimate --no-max-batch`` (``-X importtime``,
    top-level modules' cumulative times)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "nasspeech", "estimate",
                           str(CONFIG), "--no-max-batch", "--json"], capture_output=True,
                          text=True, check=True, cwd=ROOT, env=ENV)
    total = 0
    for line in done.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\S)", line)
        if m:  # a module imported at top level (no indentation)
            total += int(m.group(1))
    return total / 1e6


def plan_modes() -> list[tuple[str, float, int, str, str]]:
    """``plan()`` of emoDARTS in one process and shared among two, in this process."""
    from nasspeech.memory.estimate import resolve_config
    from nasspeech.memory.planner import plan

    config = resolve_config(CONFIG)
    rows = []
    for label, parallel in (("1 process", False), ("2 processes", True)):
        before = load()
        start = time.perf_counter()
        _, plans = plan(config.space, config.search.batch_size, "a100-40gb", config.search,
                        parallel=parallel)
        rows.append((label, time.perf_counter() - start, len(plans), before, load()))
        print(f"plan() in {label}: {rows[-1][1]:.1f} s, {len(plans)} plans "
              f"({before} -> {rows[-1][4]})", flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--plan-modes", action="store_true",
                   help="also time plan() in one and in two processes (about 2 x the plan)")
    p.add_argument("--write", action="store_true", help=f"update {RESULT.name}")
    a = p.parse_args()
    imports = import_seconds()
    print(f"imports of the estimate command: {imports:.2f} s", flush=True)
    est = command("estimate", str(CONFIG), "--json")
    est_inner = json.loads(est[1])["seconds"]
    print(f"nasspeech estimate: {est[0]:.1f} s (estimate() {est_inner:.1f} s; "
          f"{est[3]} -> {est[4]})", flush=True)
    pl = command("plan", str(CONFIG), "--gpu", "a100-40gb")
    processes = "2 processes" if " in 2 processes" in pl[2] else "1 process"
    print(f"nasspeech plan: {pl[0]:.1f} s ({processes}; {pl[3]} -> {pl[4]})", flush=True)
    modes = plan_modes() if a.plan_modes else []
    if not a.write:
        return
    lines = [SECTION, "",
             (f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/estimate_startup.py"
             f"{' --plan-modes' if modes else ''} --write` ({os.cpu_count()} cores, shared; "
             "the load is the machine's, other engineers' jobs included)."), "",
             "| what | wall time (s) | target | load before | load after |", "|---|---|---|---|---|",
             f"| imports of `nasspeech estimate` (`-X importtime`) | {imports:.2f} | | | |",
             (f"| `nasspeech estimate examples/emodarts.yaml` (estimate() {est_inner:.1f} s) | "
             f"{est[0]:.1f} | <= 10 | {est[3]} | {est[4]} |"),
             (f"| `nasspeech plan examples/emodarts.yaml --gpu a100-40gb` ({processes}) | "
             f"{pl[0]:.1f} | <= 60 | {pl[3]} | {pl[4]} |")]
    lines += [f"| `plan()` of emoDARTS in {label} ({n} plans) | {s:.1f} | | {b} | {e} |"
              for label, s, n, b, e in modes]
    text = RESULT.read_text() if RESULT.exists() else ""
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        tail = rest[rest.find("\n## "):] if "\n## " in rest else ""
        text = head.rstrip() + "\n\n" + "\n".join(lines) + "\n" + tail
    else:
        text = text.rstrip() + "\n\n" + "\n".join(lines) + "\n"
    from nasspeech.io import atomic_write

    atomic_write(RESULT, text)
    print(f"wrote {RESULT}")


if __name__ == "__main__":
    main()
