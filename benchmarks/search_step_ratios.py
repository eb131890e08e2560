"""The search-step ratios of issue #16, from one run: second order / first order, this
checkout's first order against another checkout's (e.g. a worktree of d26f8ac), and the peak
RSS of each, with the machine's load before and after.

    git worktree add /tmp/base d26f8ac
    python benchmarks/search_step_ratios.py --base /tmp/base --rounds 3 \\
        --write benchmarks/results/search_step.md

Every measurement is a fresh process (``search_step.py --inline``: its own peak RSS), and the
processes alternate: each round runs this checkout's first order, the base's first order and
this checkout's second order, in reverse order every other round, so that a change in the
machine's load hits all of them alike. Ratios are taken per round (the steps of one round ran
minutes apart at most) and their median is reported, next to the ratio of the medians.
Wall time is what the targets are about; process CPU time is printed too: on a machine shared
with other jobs it is the steadier of the two at one thread (at two threads it also counts
the time a thread spends waiting for the other).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from search_step import SETTINGS, measure

HERE = Path(__file__).resolve().parent.parent


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load average: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())


def check_tree(path: Path) -> Path:
    """``path`` if it is a checkout with a ``nasspeech`` package, else a clear error."""
    if not (path / "nasspeech" / "__init__.py").is_file():
        raise SystemExit(f"search_step_ratios.py: error: --base {path}: no nasspeech package "
                         "there (give a checkout, e.g. a git worktree of d26f8ac)")
    return path.resolve()


def run(setting: str, base: Path | None, rounds: int, steps: int, warmup: int,
        threads: int, recompute: bool = False) -> dict:
    jobs = [("new", 1), ("base", 1), ("new", 2)] if base else [("new", 1), ("new", 2)]
    if recompute:  # search.recompute_depthwise: first and second order
        jobs += [("recompute", 1), ("recompute", 2)]
    rows: list[dict] = []
    for r in range(rounds):
        for tree, order in (jobs if r % 2 == 0 else jobs[::-1]):
            row = measure(setting, order, steps, warmup, threads,
                          str(base) if tree == "base" else str(HERE),
                          recompute=tree == "recompute")
            row.update(tree=tree, round=r, load=os.getloadavg()[0])
            print(json.dumps(row), flush=True)
            rows.append(row)
    return {"rows": rows, **summarise(rows, rounds)}


def summarise(rows: list[dict], rounds: int) -> dict:
    def pick(tree: str, order: int, key: str) -> list[float]:
        return [next(x[key] for x in rows if x["tree"] == tree and x["order"] == order
                     and x["round"] == r) for r in range(rounds)]

    out: dict = {}
    for key in ("step_s_median", "cpu_s_median"):
        first, second = pick("new", 1, key), pick("new", 2, key)
        res = {"first": statistics.median(first), "second": statistics.median(second),
               "second_over_first": statistics.median(s / f for s, f in zip(second, first))}
        if any(x["tree"] == "base" for x in rows):
            base = pick("base", 1, key)
            res["base_first"] = statistics.median(base)
            res["base_over_new"] = statistics.median(b / f for b, f in zip(base, first))
        if any(x["tree"] == "recompute" for x in rows):
            for order, plain in ((1, first), (2, second)):
                rc = pick("recompute", order, key)
                res[f"recompute_{order}"] = statistics.median(rc)
                res[f"recompute_over_plain_{order}"] = statistics.median(
                    r / f for r, f in zip(rc, plain))
        out["wall" if key == "step_s_median" else "cpu"] = res
    out["peak_rss_gb"] = {f"{tree} order {order}": max(x["peak_rss_gb"] for x in rows
                                                       if x["tree"] == tree and x["order"] == order)
                          for tree, order in sorted({(x["tree"], x["order"]) for x in rows})}
    return out


def markdown(res: dict, args, load_before: str, load_after: str, base_rev: str) -> str:
    w, c = res["wall"], res["cpu"]
    lines = [(f"\n## {time.strftime('%Y-%m-%d %H:%M')} — ratios, {platform.machine()}, "
             f"{os.cpu_count()} cores, {args.threads} thread(s), setting {args.setting}\n"),
             f"- load before: `{load_before}`", f"- load after: `{load_after}`",
             (f"- {args.rounds} rounds x (this checkout order 1, "
              + (f"base {base_rev} order 1, " if base_rev else "")
              + "this checkout order 2"
              + (", both orders with recompute_depthwise" if args.recompute else "")
              + f"), alternating, each a fresh process: {args.warmup} "
              f"warm-up + {args.steps} timed steps, median per process\n"),
             "| measure | wall | CPU (process) |", "|---|---|---|",
             f"| first order, s/step | {w['first']:.2f} | {c['first']:.2f} |",
             f"| second order, s/step | {w['second']:.2f} | {c['second']:.2f} |",
             (f"| **second / first** (median of per-round ratios) | "
              f"**{w['second_over_first']:.2f}**"
             f" | {c['second_over_first']:.2f} |")]
    if "base_first" in w:
        lines += [f"| base first order, s/step | {w['base_first']:.2f} | {c['base_first']:.2f} |",
                  (f"| **base / this checkout, first order** | **{w['base_over_new']:.2f}** | "
                  f"{c['base_over_new']:.2f} |")]
    for order in (1, 2):
        if f"recompute_{order}" in w:
            lines += [(f"| order {order} with `recompute_depthwise`, s/step | "
                       f"{w[f'recompute_{order}']:.2f} | {c[f'recompute_{order}']:.2f} |"),
                      (f"| recompute / kept, order {order} | "
                       f"{w[f'recompute_over_plain_{order}']:.2f} | "
                       f"{c[f'recompute_over_plain_{order}']:.2f} |")]
    lines += ["", "| process | peak RSS (GB) |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in res["peak_rss_gb"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--setting", default="cnn", choices=list(SETTINGS))
    p.add_argument("--base", type=Path, help="checkout to compare the first order with")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--recompute", action="store_true",
                   help="also both orders with search.recompute_depthwise")
    p.add_argument("--write", type=Path, help="append a Markdown summary here")
    a = p.parse_args()
    base = check_tree(a.base) if a.base else None
    base_rev = ""
    if base:
        rev = subprocess.run(["git", "-C", str(base), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=False)
        base_rev = rev.stdout.strip() or str(base)
    before = uptime()
    print(f"# {before}", flush=True)
    res = run(a.setting, base, a.rounds, a.steps, a.warmup, a.threads, a.recompute)
    after = uptime()
    print(f"# {after}")
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, indent=1))
    text = markdown(res, a, before, after, base_rev)
    print(text)
    if a.write:
        with a.write.open("a") as fh:
            fh.write(text)


if __name__ == "__main__":
    main()
