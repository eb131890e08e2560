"""Wall time of ``nasspeech estimate`` and ``nasspeech plan`` as new processes (issue #16,
targets 4 and 5), with the imports' share, and the planner shared among processes vs not.

    python benchmarks/estimate_startup.py                 # print the numbers
    python benchmarks/estimate_startup.py --plan-modes    # + plan() in 1 and in 2 processes
    python benchmarks/estimate_startup.py --write         # + update the results file
    python benchmarks/estimate_startup.py --baseline DIR  # + the same commands of another
                                                          #   checkout (e.g. git archive of
                                                          #   the commit before), alternating

Every number comes with the machine's load (the 1-minute load average and the CPU pressure
from ``/proc/pressure/cpu``) just before and after it: the machine is shared, and a busy one
makes everything slower. Targets: the estimate command <= 10 s and the plan command <= 60 s
on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "emodarts.yaml"
RESULT = ROOT / "benchmarks" / "results" / "memory_estimate_speed.md"
SECTION = "## New processes: `nasspeech estimate` and `nasspeech plan` (issue #16)"


def env(code: Path) -> dict[str, str]:
    """The environment that runs ``code``'s nasspeech (run it with ``cwd=code`` too: the
    current folder comes first on ``sys.path`` for ``-c`` and ``-m``)."""
    return {**os.environ, "PYTHONPATH": str(code)}


def load() -> str:
    """The 1-minute load average and the 10-second CPU pressure, as text."""
    avg = Path("/proc/loadavg").read_text().split()[0]
    try:
        pressure = Path("/proc/pressure/cpu").read_text().split()[1].split("=")[1]
        return f"load {avg}, cpu pressure {pressure} %"
    except (OSError, IndexError):
        return f"load {avg}"


def command(*args: str, code: Path = ROOT) -> tuple[float, str, str, str, str]:
    """(wall seconds, stdout, stderr, load before, load after) of ``nasspeech ARGS`` (the
    nasspeech of ``code``)."""
    before = load()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "nasspeech", *args], capture_output=True,
                          text=True, check=True, cwd=code, env=env(code))
    return time.perf_counter() - start, done.stdout, done.stderr, before, load()


#: what ``nasspeech estimate`` imports before it estimates (its parser builds every command's)
IMPORTS = ("from nasspeech.cli.main import build_parser; build_parser(); "
           "import nasspeech.cli.commands.estimate, nasspeech.memory.estimate, "
           "nasspeech.memory.batch, nasspeech.config")


def import_seconds(code: Path = ROOT) -> float:
    """Wall seconds of a new Python process that does the estimate command's imports, the
    best of three (``python -c``; Python's own start-up included, torch._dynamo, which the
    estimate pulls in later through torch's meta kernels, not)."""
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", IMPORTS], check=True, cwd=code, env=env(code))
        best = min(best, time.perf_counter() - start)
    return best


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
    p.add_argument("--baseline", type=Path, help="another checkout to time the same way")
    a = p.parse_args()
    base: dict[str, tuple] = {}
    if a.baseline:
        base["imports"] = (import_seconds(a.baseline),)
    imports = import_seconds()
    print(f"imports of the estimate command: {imports:.2f} s"
          + (f" (baseline {base['imports'][0]:.2f} s)" if base else ""), flush=True)
    if a.baseline:
        base["estimate"] = command("estimate", str(CONFIG), "--json", code=a.baseline)
    est = command("estimate", str(CONFIG), "--json")
    est_inner = json.loads(est[1])["seconds"]
    print(f"nasspeech estimate: {est[0]:.1f} s (estimate() {est_inner:.1f} s; "
          f"{est[3]} -> {est[4]})", flush=True)
    if a.baseline:
        base["plan"] = command("plan", str(CONFIG), "--gpu", "a100-40gb", code=a.baseline)
    pl = command("plan", str(CONFIG), "--gpu", "a100-40gb")
    processes = "2 processes" if " in 2 processes" in pl[2] else "1 process"
    print(f"nasspeech plan: {pl[0]:.1f} s ({processes}; {pl[3]} -> {pl[4]})", flush=True)
    for what, row in base.items():
        if what != "imports":
            print(f"baseline {what}: {row[0]:.1f} s ({row[3]} -> {row[4]})", flush=True)
    modes = plan_modes() if a.plan_modes else []
    if not a.write:
        return
    lines = [SECTION, "",
             (f"Measured {time.strftime('%Y-%m-%d %H:%M')} by `python benchmarks/estimate_startup.py"
             f"{' --plan-modes' if modes else ''}{' --baseline DIR' if base else ''} --write` "
             f"({os.cpu_count()} cores, shared; "
             "the load is the machine's, other engineers' jobs included)."), "",
             "| what | wall time (s) | target | load before | load after |", "|---|---|---|---|---|",
             f"| imports of `nasspeech estimate` (a new process, best of 3) | {imports:.2f} | | | |",
             (f"| `nasspeech estimate examples/emodarts.yaml` (estimate() {est_inner:.1f} s) | "
             f"{est[0]:.1f} | <= 10 | {est[3]} | {est[4]} |"),
             (f"| `nasspeech plan examples/emodarts.yaml --gpu a100-40gb` ({processes}) | "
             f"{pl[0]:.1f} | <= 60 | {pl[3]} | {pl[4]} |")]
    lines += [f"| `plan()` of emoDARTS in {label} ({n} plans) | {s:.1f} | | {b} | {e} |"
              for label, s, n, b, e in modes]
    if base:
        lines += [f"| baseline ({a.baseline}): imports | {base['imports'][0]:.2f} | | | |",
                  *(f"| baseline: `nasspeech {what}` | {row[0]:.1f} | | {row[3]} | {row[4]} |"
                    for what, row in base.items() if what != "imports")]
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
