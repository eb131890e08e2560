"""fp32 vs bf16 (``search.precision``) on CPU: search-step time and peak memory, and the
genotype the demo search finds in each.

    python benchmarks/precision.py steps              # step time and peak RSS, fresh processes
    python benchmarks/precision.py demo               # the demo's fold-0 search, both ways
    python benchmarks/precision.py all --write benchmarks/results/precision.md

Step timings: each (setting, order, precision) in a fresh process (its peak RSS is its own),
the settings of ``benchmarks/search_step.py``, the median of ``--steps`` steps after a warm-up
step; fp32 and bf16 alternate so that a change in the machine's load hits both. The load
average (``/proc/loadavg``) is recorded before and after each process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from search_step import SETTINGS  # the step benchmark's settings

PRECISIONS = ("fp32", "bf16")


def load() -> float:
    """The 1-minute load average."""
    return float(Path("/proc/loadavg").read_text().split()[0])


def run_one(name: str, order: int, precision: str, steps: int, threads: int) -> dict:
    import torch

    from nasspeech.config import SearchConfig
    from nasspeech.search.recipe import build_search
    from nasspeech.space import SearchSpace

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    s = SETTINGS[name]
    space = SearchSpace(name=name, input_shape=s["input_shape"], num_classes=4,
                        components=s["components"])
    recipe = build_search(SearchConfig(order=order, precision=precision), space.build_supernet())
    x = torch.randn(2 * s["batch"], *s["input_shape"])
    y = torch.randint(0, 4, (2 * s["batch"],))
    train, val = (x[: s["batch"]], y[: s["batch"]]), (x[s["batch"]:], y[s["batch"]:])
    times = []
    for i in range(1 + steps):
        t0 = time.perf_counter()
        recipe.step(train, val, lr=0.025)
        if i:
            times.append(time.perf_counter() - t0)
    return {"setting": name, "order": order, "precision": precision, "batch": s["batch"],
            "threads": threads, "step_s_median": round(statistics.median(times), 3),
            "step_s_all": [round(t, 3) for t in times],
            "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6, 3)}


def measure(name: str, order: int, precision: str, steps: int, threads: int) -> dict:
    before = load()
    cmd = [sys.executable, __file__, "--inline", name, str(order), precision, str(steps),
           str(threads)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    row = json.loads(out.strip().splitlines()[-1])
    return {**row, "load_before": before, "load_after": load()}


def step_rows(settings: list[tuple[str, int]], steps: int, threads: int) -> list[dict]:
    rows = []
    for name, order in settings:
        for precision in PRECISIONS:
            row = measure(name, order, precision, steps, threads)
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


#: the demo searches: fp32, bf16, and a control for how much any change of the arithmetic
#: moves the genotype (fp32 on one thread: another summation order)
DEMO_RUNS = (("fp32", None), ("bf16", None), ("fp32", 1))


def demo_search(precision: str, out: Path, threads: int | None = None) -> dict:
    """The demo config's fold-0 search with ``search.precision`` (and ``threads``) set (a
    copy of the config next to the original, so that its relative paths mean the same)."""
    import yaml

    config = ROOT / "examples" / "demo.yaml"
    data = yaml.safe_load(config.read_text())
    data.setdefault("search", {})["precision"] = precision
    if threads is not None:
        data["threads"] = threads
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=config.parent,
                                     prefix=f".precision-{precision}-", delete=False) as fh:
        yaml.safe_dump(data, fh)
    label = precision + (f", {threads} thread" if threads else "")
    run_dir = out / f"search-{precision}-{threads}"
    try:
        before, start = load(), time.perf_counter()
        subprocess.run([sys.executable, "-m", "nasspeech", "search", fh.name, "--fold", "0",
                        "--out", str(run_dir), "--restart", "--quiet"], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
        seconds = time.perf_counter() - start
    finally:
        os.unlink(fh.name)
    genotype = json.loads((run_dir / "genotype.json").read_text())
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    return {"precision": label, "seconds": round(seconds, 1), "load_before": before,
            "load_after": load(), "genotype": genotype, "val_acc": log[-1]["val_acc"],
            "train_loss": log[-1]["train_loss"]}


def _edges(genotype: dict) -> set[tuple]:
    """The derived genotype's edges: (component, cell, node, op, source)."""
    return {(c["name"], cell, n, e["op"], e["source"])
            for c in genotype["components"] for cell, spec in c["cells"].items()
            for n, node in enumerate(spec["nodes"]) for e in node}


def write(path: Path, rows: list[dict], demo: list[dict]) -> None:
    import torch

    lines = [(f"## {time.strftime('%Y-%m-%d %H:%M')}: {platform.machine()}, "
              f"{os.cpu_count()} cores (shared), torch {torch.__version__}"), ""]
    if rows:
        lines += [("| setting | order | batch | precision | step s (median) | steps s | "
                   "peak RSS GB | load before / after |"), "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['setting']} | {r['order']} | {r['batch']} | {r['precision']} | "
                  f"{r['step_s_median']} | {r['step_s_all']} | {r['peak_rss_gb']} | "
                  f"{r['load_before']:.2f} / {r['load_after']:.2f} |" for r in rows]
        lines.append("")
    if demo:
        edges = [_edges(d["genotype"]) for d in demo]
        lines += [("| demo search, fold 0 | seconds | final val acc | final train loss | "
                   "edges as in fp32 | load before / after |"), "|---|---|---|---|---|---|"]
        lines += [f"| {d['precision']} | {d['seconds']} | {d['val_acc']:.3f} | "
                  f"{d['train_loss']:.4f} | {len(e & edges[0])} of {len(edges[0])} | "
                  f"{d['load_before']:.2f} / {d['load_after']:.2f} |"
                  for d, e in zip(demo, edges, strict=True)]
        lines += ["", "Edges: (component, cell, node, op, source) of the derived genotype."]
        for d in demo:
            lines += [f"{d['precision']} genotype:", "", "```json",
                      json.dumps(d["genotype"], sort_keys=True), "```", ""]
    from nasspeech.io import atomic_write

    before = path.read_text() if path.exists() else "# fp32 vs bf16 on CPU (issue #16)\n\n"
    atomic_write(path, before + "\n".join(lines) + "\n")


def main() -> None:
    if sys.argv[1:2] == ["--inline"]:
        name, order, precision, steps, threads = sys.argv[2:7]
        print(json.dumps(run_one(name, int(order), precision, int(steps), int(threads))))
        return
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("what", choices=("steps", "demo", "all"))
    p.add_argument("--settings", nargs="+", default=["emodarts-small:1", "emodarts-small:2",
                                                    "cnn:1"],
                   help="SETTING:ORDER pairs (settings of benchmarks/search_step.py)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--write", type=Path, help="append Markdown tables here")
    a = p.parse_args()
    rows, demo = [], []
    if a.what in ("steps", "all"):
        settings = [(s.split(":")[0], int(s.split(":")[1])) for s in a.settings]
        rows = step_rows(settings, a.steps, a.threads)
    if a.what in ("demo", "all"):
        # the demo corpus and its features first (cached; not part of either search's time)
        subprocess.run([sys.executable, "-m", "nasspeech", "features",
                        str(ROOT / "examples" / "demo.yaml"), "--quiet"], check=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True)
        with tempfile.TemporaryDirectory() as tmp:
            for precision, threads in DEMO_RUNS:
                demo.append(demo_search(precision, Path(tmp), threads))
                print(json.dumps({k: v for k, v in demo[-1].items() if k != "genotype"}),
                      flush=True)
    if a.write:
        write(a.write, rows, demo)


if __name__ == "__main__":
    main()
