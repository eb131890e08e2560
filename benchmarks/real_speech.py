"""emoDARTS protocol on real speech: the shared RAVDESS 4-class sample, 6 speaker-independent,
gender-balanced folds (4 actors each: 2 male, 2 female).

    python benchmarks/real_speech.py run --jobs 2          # resumable; partial runs give rows
    python benchmarks/real_speech.py report                # table from what has finished
    python benchmarks/real_speech.py config > ravdess.yaml # the joint row as a `nasspeech cv` config

Rows: the searched joint CNN+seq model retrained on the training split (paper protocol,
``train.data: train``) and on search+train, the CNN-only DARTS space, and the three paper
baselines (``cnn``, ``cnn_lstm``, ``cnn_lstm_att``). Every row goes through the public workflow
functions (``load_run_data``, ``run_search``, ``run_train``), the code ``nasspeech cv`` runs.

Work is split into tasks (fold x group: joint search + its two retrainings, CNN-only search +
retraining, the three baselines), run as ``--jobs`` subprocesses with ``--threads`` torch
threads each; each writes its run directories under ``--work`` and is resumed (finished runs
skipped, interrupted ones continued from their checkpoints) when started again. The corpus is
read in place (``--data`` or ``$NASSPEECH_RAVDESS``, default ``../shared/data/ravdess-4class``
relative to the repository); nothing is copied.
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

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
# ../shared/data/ravdess-4class beside the repository (or beside a folder of worktrees)
DEFAULT_DATA = next((d / "shared" / "data" / "ravdess-4class" for d in REPO.parents
                     if (d / "shared" / "data" / "ravdess-4class").is_dir()),
                    REPO.parent / "shared" / "data" / "ravdess-4class")

FOLDS = 6
CNN_OPS = ["max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "dil_conv_3x3", "conv_7x1_1x7",
           "skip_connect", "none"]
SEQ_OPS = ["lstm_1", "lstm_att_1", "rnn_1", "rnn_att_1", "skip_connect", "none"]
CNN = dict(name="cnn", family="cnn", ops=CNN_OPS, cells=3, nodes=2, channels=8)
SEQ = dict(name="seq", family="seq", ops=SEQ_OPS, cells=1, nodes=2, channels=32)
FEATURES = dict(sample_rate=16000, duration=3.0, n_mfcc=64, frames=64, n_fft=1024,
                hop_length=256, n_mels=64, kind="mfcc")
SEARCH = dict(epochs=15, batch_size=16, order=1, lr=0.05, lr_min=0.005, alpha_lr=0.003)
TRAIN = dict(epochs=40, batch_size=32, lr=0.05, lr_min=0.001)
BASELINES = ("cnn", "cnn_lstm", "cnn_lstm_att")
# row name -> (task group, run directory under the fold)
ROWS = {
    "searched CNN+seq (train)": ("joint", "joint/train"),
    "searched CNN+seq (search+train)": ("joint", "joint/train_search+train"),
    "searched CNN-only": ("cnn_only", "cnn_only/train"),
    **{f"baseline {b}": ("baselines", b) for b in BASELINES},
    # the paper's baselines have one conv channel; the demo gives them 8 (see examples/demo.yaml)
    **{f"baseline {b} (8 conv channels)": ("baselines", f"{b}_8ch") for b in BASELINES},
}
GROUPS = ("joint", "cnn_only", "baselines")


def run_config(data_root: Path, cache: Path, components: list[dict], threads: int,
               train_data: str = "train", baseline_options: dict | None = None) -> object:
    from nasspeech.config import RunConfig

    return RunConfig.model_validate({
        "name": "real_speech", "seed": 0, "device": "cpu", "threads": threads,
        "space": {"name": "real_speech", "input_shape": [1, FEATURES["n_mfcc"],
                                                         FEATURES["frames"]],
                  "num_classes": 4, "components": components},
        "search": SEARCH,
        "train": {**TRAIN, "data": train_data, "baseline_options": baseline_options or {}},
        "data": {"corpus": "ravdess", "root": str(data_root), "folds": FOLDS,
                 "group_by": "speaker", "balance_gender": True, "cache_dir": str(cache),
                 "workers": 1, "features": FEATURES},
    })


def joint_components() -> list[dict]:
    return [{**CNN, "handover": "fold_frequency"}, {**SEQ, "handover": "mean_over_time"}]


def cnn_only_components() -> list[dict]:
    return [{**CNN, "handover": "global_avg_pool"}]


def _seconds(log: Path) -> float | None:
    if not log.is_file():
        return None
    return sum(json.loads(line).get("seconds", 0.0) for line in log.read_text().splitlines()
               if line.strip())


def task(group: str, fold: int, args: argparse.Namespace) -> None:
    """One fold's share of a row group, in this process (resumable)."""
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.search import run_search
    from nasspeech.workflow.train import run_train

    root, work = Path(args.data), Path(args.work)
    fold_dir = work / f"fold_{fold}"
    cache = work / "cache"
    comps = cnn_only_components() if group == "cnn_only" else joint_components()
    config = run_config(root, cache, comps, args.threads)
    data = load_run_data(config, progress=False)
    if group in ("joint", "cnn_only"):
        search = run_search(config, data, fold, fold_dir / group / "search", resume=True,
                            progress=False)
        run_train(config, data, fold, fold_dir / group / "train", genotype=search.genotype,
                  model_name="searched", progress=False, resume=True)
        if group == "joint":
            both = run_config(root, cache, comps, args.threads, train_data="search+train")
            run_train(both, data, fold, fold_dir / group / "train_search+train",
                      genotype=search.genotype, model_name="searched", progress=False,
                      resume=True)
    else:
        wide = run_config(root, cache, comps, args.threads, baseline_options={"conv_channels": 8})
        for name in BASELINES:
            run_train(config, data, fold, fold_dir / name, model_name=name, progress=False,
                      resume=True)
            run_train(wide, data, fold, fold_dir / f"{name}_8ch", model_name=name,
                      progress=False, resume=True)


def run(args: argparse.Namespace) -> None:
    from nasspeech.workflow.datasets import load_run_data

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    # features once, in this process (cached for the tasks), with the folds printed
    config = run_config(Path(args.data), work / "cache", joint_components(), args.threads)
    config = config.model_copy(update={"data": config.data.model_copy(
        update={"workers": args.jobs})})
    t0 = time.perf_counter()
    data = load_run_data(config, progress=True)
    print(f"features: {tuple(data.x.shape)} in {time.perf_counter() - t0:.1f} s", flush=True)
    for split in data.folds:
        print(f"fold {split.index}: test {split.summary.get('test_groups')} ({len(split.test)} clips), "
              f"search {len(split.search)}, train {len(split.train)}", flush=True)
    folds = args.folds or list(range(FOLDS))
    groups = args.groups or list(GROUPS)
    queue = [(g, k) for k in folds for g in groups]
    running: list[tuple[subprocess.Popen, str, int, float]] = []
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}
    while queue or running:
        while queue and len(running) < args.jobs:
            g, k = queue.pop(0)
            log = open(work / f"task_{g}_fold{k}.log", "a")
            cmd = [sys.executable, __file__, "task", g, str(k), "--data", args.data, "--work",
                   args.work, "--threads", str(args.threads)]
            running.append((subprocess.Popen(cmd, env=env, stdout=log, stderr=log), g, k,
                            time.perf_counter()))
            print(f"started {g} fold {k}", flush=True)
        time.sleep(2)
        for item in list(running):
            proc, g, k, t = item
            if proc.poll() is not None:
                running.remove(item)
                print(f"finished {g} fold {k}: rc {proc.returncode}, "
                      f"{time.perf_counter() - t:.0f} s", flush=True)
        report(args)


def collect(work: Path) -> dict[str, list[dict]]:
    """Per row, the finished folds' metrics plus search / retrain seconds."""
    rows: dict[str, list[dict]] = {}
    for row, (group, sub) in ROWS.items():
        for k in range(FOLDS):
            run_dir = work / f"fold_{k}" / sub
            metrics = run_dir / "metrics.json"
            if not metrics.is_file():
                continue
            m = json.loads(metrics.read_text())
            search_log = work / f"fold_{k}" / group / "search" / "log.jsonl"
            rows.setdefault(row, []).append({
                "fold": k, "ua": m["ua"], "wa": m["wa"], "params": m["params"],
                "n_train": m["n_train"], "n_test": m["n_test"], "train_data": m["train_data"],
                "search_s": _seconds(search_log) if group != "baselines" else None,
                "train_s": _seconds(run_dir / "log.jsonl"),
                "per_class_recall": m["per_class_recall"],
                "genotype": (json.loads((run_dir / "genotype.json").read_text())
                             if (run_dir / "genotype.json").is_file() else None)})
    return rows


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def _genotype_ops(genotype: dict | None) -> str:
    """``cnn: 5/8 parameter-free; seq: lstm_1, skip_connect`` from a genotype dict."""
    if not genotype:
        return "-"
    free = {"max_pool_3x3", "avg_pool_3x3", "skip_connect", "none"}
    parts = []
    for comp in genotype["components"]:
        ops = [e["op"] for cell in comp["cells"].values() for node in cell["nodes"] for e in node]
        n_free = sum(op in free for op in ops)
        parts.append(f"{comp['name']}: {n_free}/{len(ops)} parameter-free")
    return "; ".join(parts)


def _kv(d: dict) -> str:
    return ", ".join(f"{k} {'/'.join(v) if isinstance(v, list) else v}" for k, v in d.items()
                     if k not in ("name", "family"))


def _load_summary(work: Path) -> str:
    path = work / "load.log"
    if not path.is_file():
        return "not sampled"
    loads = [float(line.split()[1]) for line in path.read_text().splitlines() if line.strip()]
    if not loads:
        return "not sampled"
    return (f"1-min load average sampled every 30 s during the run: min {min(loads):.1f}, "
            f"median {statistics.median(loads):.1f}, max {max(loads):.1f} "
            f"({len(loads)} samples) on {os.cpu_count()} cores")


def report(args: argparse.Namespace) -> None:
    from nasspeech.io import atomic_write

    work = Path(args.work)
    rows = collect(work)
    if not rows:
        return
    lines = ["| model | folds | UA % (mean ± std) | WA % (mean ± std) | parameters "
             "| search s/fold | retrain s/fold |", "|---|---|---|---|---|---|---|"]
    for row in ROWS:
        folds = rows.get(row, [])
        if not folds:
            lines.append(f"| {row} | 0 | not run | | | | |")
            continue
        ua, wa = _ms([f["ua"] for f in folds]), _ms([f["wa"] for f in folds])
        params = _ms([f["params"] for f in folds])
        search = [f["search_s"] for f in folds if f["search_s"] is not None]
        train = [f["train_s"] for f in folds if f["train_s"] is not None]
        search_s = f"{statistics.mean(search):.0f}" if search else "-"
        train_s = f"{statistics.mean(train):.0f}" if train else "-"
        spread = f" ± {params[1]:,.0f}" if params[1] else ""
        lines.append(
            f"| {row} | {len(folds)} | {100 * ua[0]:.1f} ± {100 * ua[1]:.1f} "
            f"| {100 * wa[0]:.1f} ± {100 * wa[1]:.1f} | {params[0]:,.0f}{spread} "
            f"| {search_s} | {train_s} |")
    per_fold = ["| model | " + " | ".join(f"fold {k}" for k in range(FOLDS)) + " |",
                "|---|" + "---|" * FOLDS]
    for row in ROWS:
        by_fold = {f["fold"]: f for f in rows.get(row, [])}
        per_fold.append(f"| {row} | " + " | ".join(
            f"{100 * by_fold[k]['ua']:.1f}" if k in by_fold else "-" for k in range(FOLDS)) + " |")
    genotypes = ["| fold | joint CNN+seq | CNN-only |", "|---|---|---|"]
    for k in range(FOLDS):
        cells = []
        for row in ("searched CNN+seq (train)", "searched CNN-only"):
            match = [f for f in rows.get(row, []) if f["fold"] == k]
            cells.append(_genotype_ops(match[0]["genotype"]) if match else "-")
        genotypes.append(f"| {k} | " + " | ".join(cells) + " |")
    done = sum(len(v) for v in rows.values())
    status = ("complete: every row on all 6 folds" if done == len(ROWS) * FOLDS
              else f"PARTIAL: {done} of {len(ROWS) * FOLDS} row-folds finished; the folds column "
                   "says how many each row has")
    meta = {"status": status, "folds": FOLDS, "features": FEATURES, "search": SEARCH,
            "train": TRAIN, "cnn": CNN, "seq": SEQ, "threads_per_process": args.threads,
            "jobs": args.jobs, "machine": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "load": _load_summary(work)}
    atomic_write(Path(args.json), json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    text = HEADER.format(status=status, features=_kv(FEATURES), search=_kv(SEARCH),
                         train=_kv(TRAIN), cnn=_kv(CNN), seq=_kv(SEQ), jobs=args.jobs, threads=args.threads, load=meta["load"],
                         cpu=meta["machine"])
    atomic_write(Path(args.table), text + "\n".join(lines) + "\n\n## UA % per fold\n\n"
                 + "\n".join(per_fold) + "\n\n## Searched cells: parameter-free share of the "
                 "kept edges (max/avg pool, skip, none)\n\n" + "\n".join(genotypes) + "\n")


HEADER = """# Real speech: the emoDARTS protocol on RAVDESS (4 classes)

Generated by `python benchmarks/real_speech.py run --jobs {jobs} --threads {threads}` (then
`report`); raw per-fold numbers in `real_speech.json`; discussion in `docs/real-speech.md`.

**Status: {status}.**

- Data: the shared RAVDESS sample (672 clips, 24 actors, anger/happiness/sadness/neutral,
  neutral has half the clips), `corpus: ravdess`, 6 speaker-independent folds of 4 actors
  (`balance_gender: true`: 2 male + 2 female per test fold); non-test clips split 70 % search
  (half weights, half alphas) / 30 % training, as in the paper. Seed 0 (fold k: seed + k), as
  the demo.
- Features: {features}.
- Space: CNN {cnn}; seq {seq}. The CNN-only row uses the same CNN with `global_avg_pool`.
- Search: {search} (first order: a second-order step costs 3.8-4.2x a first-order one
  here, see docs/real-speech.md). Retraining: {train}.
- Baselines: the paper's (`conv_channels: 1`) and, as the demo does, with 8 conv channels.
- Machine: {cpu}, {jobs} processes x {threads} torch thread; {load}. Other engineers ran
  tests on the same 2 cores: times are upper bounds.

"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=["run", "task", "report", "config"])
    p.add_argument("group", nargs="?", choices=GROUPS)
    p.add_argument("fold", nargs="?", type=int)
    p.add_argument("--data", default=os.environ.get("NASSPEECH_RAVDESS", str(DEFAULT_DATA)))
    p.add_argument("--work", default=str(REPO / ".nasspeech-cache" / "real_speech"))
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--folds", type=int, nargs="*")
    p.add_argument("--groups", nargs="*", choices=GROUPS)
    p.add_argument("--json", default=str(RESULTS / "real_speech.json"))
    p.add_argument("--table", default=str(RESULTS / "real_speech.md"))
    args = p.parse_args()
    if args.command == "task":
        task(args.group, args.fold, args)
    elif args.command == "config":
        import yaml

        config = run_config(Path(args.data), Path(args.work) / "cache", joint_components(),
                            args.threads)
        print(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), end="")
    elif args.command == "run":
        run(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
