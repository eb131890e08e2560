"""Wall time of the demo's cross-validation with ``--executor serial`` vs ``--executor ray``,
and Ray's own overhead, in one run on this machine.

    PYTHONPATH=$PWD python benchmarks/cv_executors.py --write

The cv is the demo's (``examples/demo.yaml``: 4 folds, each a search, its retraining and the
``cnn_lstm_att`` baseline: 12 jobs) with one torch thread per job; the data are loaded once,
before both runs (the CLI loads them the same way for either executor). The ray run starts
its own local Ray (sized to the machine), so its time includes Ray's start-up and its
workers' imports. Then, separately: ``ray.init``, a first task (a worker process starts), a
warm task's round trip, many no-op tasks, and what importing nasspeech costs in a worker.
The load average is recorded before and after: the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASELINE = "cnn_lstm_att"


def load() -> tuple[float, float, float]:
    return tuple(round(v, 2) for v in os.getloadavg())


def run_cvs(out: Path) -> dict:
    from nasspeech.workflow.cv import run_cv
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.demo import demo_config
    from nasspeech.workflow.executors.ray import RayExecutor
    from nasspeech.workflow.executors.serial import SerialExecutor

    config = demo_config().model_copy(update={"threads": 1})
    data = load_run_data(config, progress=False)
    runs = {}
    for name, executor in (("serial", SerialExecutor()), ("ray", RayExecutor(cpus_per_task=1))):
        before = load()
        t0 = time.perf_counter()
        res = run_cv(config, data, out / name, baselines=(BASELINE,), progress=False,
                     executor=executor)
        runs[name] = {"wall_s": round(time.perf_counter() - t0, 1), "load_before": before,
                      "load_after": load(), "jobs": len(res.job_seconds),
                      "job_seconds": {k: round(v, 1) for k, v in res.job_seconds.items()},
                      "ua_mean": res.tables["searched"]["mean"]["ua"]}
        print(name, runs[name]["wall_s"], "s", file=sys.stderr)
    same = (out / "serial/results.md").read_text() == (out / "ray/results.md").read_text()
    genotypes = all((out / "serial" / f"fold_{k}/search/genotype.json").read_text()
                    == (out / "ray" / f"fold_{k}/search/genotype.json").read_text()
                    for k in range(len(data.folds)))
    jobs = runs["serial"]["job_seconds"]
    chains = [jobs[f"fold_{k}/search"] + jobs[f"fold_{k}/train"] for k in range(len(data.folds))]
    bound = max(sum(jobs.values()) / os.cpu_count(), max(chains))
    return {"runs": runs, "same_results_md": same, "same_genotypes": genotypes,
            "ratio": round(runs["ray"]["wall_s"] / runs["serial"]["wall_s"], 3),
            "serial_job_sum_s": round(sum(jobs.values()), 1),
            "ideal_ray_s": round(bound, 1),
            "ideal_ratio": round(bound / runs["serial"]["wall_s"], 3)}


def ray_overhead(n_noop: int = 500, n_round_trips: int = 50) -> dict:
    import ray

    before = load()
    t0 = time.perf_counter()
    ray.init(include_dashboard=False, logging_level="WARNING")
    init_s = time.perf_counter() - t0

    def import_nasspeech() -> float:  # nested: shipped by value, whatever imports this file
        t0 = time.perf_counter()
        import nasspeech.workflow.executors.ray  # noqa: F401 - what a job task imports

        return time.perf_counter() - t0

    noop, imp = ray.remote(lambda: 0), ray.remote(import_nasspeech)
    t0 = time.perf_counter()
    ray.get(noop.remote())
    first_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(n_round_trips):
        ray.get(noop.remote())
    trip_ms = (time.perf_counter() - t0) / n_round_trips * 1000
    t0 = time.perf_counter()
    ray.get([noop.remote() for _ in range(n_noop)])
    per_task_ms = (time.perf_counter() - t0) / n_noop * 1000
    import_s = ray.get(imp.remote())
    cpus = ray.cluster_resources().get("CPU")
    t0 = time.perf_counter()
    ray.shutdown()
    shutdown_s = time.perf_counter() - t0
    return {"init_s": round(init_s, 2), "first_task_s": round(first_s, 2),
            "round_trip_ms": round(trip_ms, 2), "noop_task_ms": round(per_task_ms, 2),
            "n_noop": n_noop, "worker_import_nasspeech_s": round(import_s, 2),
            "shutdown_s": round(shutdown_s, 2), "cluster_cpus": cpus,
            "load_before": before, "load_after": load()}


SEARCH_ONE = """
import sys, tempfile, time
from nasspeech.workflow.datasets import load_run_data
from nasspeech.workflow.demo import demo_config
from nasspeech.workflow.search import run_search
config = demo_config().model_copy(update={"threads": 1})
data = load_run_data(config, progress=False)
with tempfile.TemporaryDirectory() as tmp:
    t0 = time.perf_counter()
    run_search(config, data, int(sys.argv[1]), tmp + "/s", progress=False)
    print(round(time.perf_counter() - t0, 1))
"""


def contention(folds: tuple[int, int] = (0, 1)) -> dict:
    """Without Ray: the demo search of one fold alone, then two folds' searches at once in two
    plain processes (one torch thread each): how much two of our jobs slow each other here."""
    import subprocess

    def start(k: int) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-c", SEARCH_ONE, str(k)], text=True,
                                stdout=subprocess.PIPE, env={**os.environ,
                                                             "PYTHONPATH": str(ROOT)})

    before = load()
    alone = {k: float(start(k).communicate()[0]) for k in folds}
    pair = [start(k) for k in folds]
    together = {k: float(p.communicate()[0]) for k, p in zip(folds, pair)}
    return {"alone_s": alone, "together_s": together, "load_before": before,
            "load_after": load(),
            "slowdown": round(sum(together.values()) / sum(alone.values()), 2)}


def contention_markdown(c: dict) -> str:
    rows = "\n".join(f"| fold_{k}/search | {c['alone_s'][k]} | {c['together_s'][k]} |"
                      for k in c["alone_s"])
    return f"""
Control without Ray ({time.strftime('%Y-%m-%d %H:%M')}, `--contention`): the demo search of a fold
alone, then two folds' searches at once as two plain processes, one torch thread each; load
{c['load_before']} → {c['load_after']}. Two of our jobs at once run **{c['slowdown']}×** slower
each than one alone.

| job | alone (s) | two at once (s) |
|---|---|---|
{rows}
"""


def markdown(r: dict) -> str:
    s, y = r["runs"]["serial"], r["runs"]["ray"]
    o = r["overhead"]
    rows = "\n".join(f"| {k} | {s['job_seconds'][k]} | {y['job_seconds'][k]} |"
                     for k in s["job_seconds"])
    return f"""## {r['date']} — {r['machine']}

Demo cv (`examples/demo.yaml`: 4 folds × (search, retrain, `{BASELINE}`) = 12 jobs), one torch
thread per job, data loaded once before both runs; the ray run includes starting a local Ray.

| executor | wall (s) | load avg (1/5/15 min) before → after |
|---|---|---|
| serial | {s['wall_s']} | {s['load_before']} → {s['load_after']} |
| ray (local, {o['cluster_cpus']:g} CPUs, 1 CPU per task) | {y['wall_s']} | {y['load_before']} → {y['load_after']} |

- ray / serial: **{r['ratio']}** (target ≤ 0.6). Ideal on {os.cpu_count()} cores from the serial job times:
  max(Σ jobs / cores, longest search + retrain) = {r['ideal_ray_s']} s, i.e. {r['ideal_ratio']} of serial.
- Same results.md: {r['same_results_md']}; same genotypes: {r['same_genotypes']}
  (searched UA {s['ua_mean']:.2%} serial, {y['ua_mean']:.2%} ray).

Ray's own overhead (a fresh local Ray, measured after the cv runs):

| | |
|---|---|
| `ray.init` (local) | {o['init_s']} s |
| first task (starts a worker process) | {o['first_task_s']} s |
| warm task round trip (sequential, {50}) | {o['round_trip_ms']} ms |
| no-op task, {o['n_noop']} in parallel | {o['noop_task_ms']} ms per task |
| importing nasspeech's job code in a fresh worker | {o['worker_import_nasspeech_s']} s |
| `ray.shutdown` | {o['shutdown_s']} s |

Per job (s; ray: from start to result in the driver, two at a time):

| job | serial | ray |
|---|---|---|
{rows}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true",
                        help="write benchmarks/results/cv_executors.md and .json")
    parser.add_argument("--contention", action="store_true",
                        help="only the control without Ray (appended to the results with "
                             "--write)")
    args = parser.parse_args()
    if args.contention:
        from nasspeech.io import atomic_write

        c = contention()
        text = contention_markdown(c)
        print(text)
        if args.write:
            out = ROOT / "benchmarks" / "results"
            atomic_write(out / "cv_executors.md", (out / "cv_executors.md").read_text() + text)
            data = json.loads((out / "cv_executors.json").read_text())
            atomic_write(out / "cv_executors.json", json.dumps({**data, "contention": c},
                                                               indent=2))
        return
    import torch

    with tempfile.TemporaryDirectory(prefix="cv-executors-") as tmp:
        result = run_cvs(Path(tmp))
    result["overhead"] = ray_overhead()
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    result["machine"] = (f"{platform.machine()}, {os.cpu_count()} cores, torch "
                         f"{torch.__version__}, ray {__import__('ray').__version__}")
    text = markdown(result)
    print(text)
    if args.write:
        from nasspeech.io import atomic_write

        out = ROOT / "benchmarks" / "results"
        atomic_write(out / "cv_executors.md", "# cv executors: serial vs ray\n\n" + text)
        atomic_write(out / "cv_executors.json", json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
