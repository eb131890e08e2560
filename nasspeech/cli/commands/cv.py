"""``nasspeech cv CONFIG``."""

from __future__ import annotations

import argparse

from nasspeech.cli.commands._run import (
    add_run_arguments,
    check_fold,
    load_config,
    positive_int,
    workflow_errors,
)

NAME = "cv"
HELP = "cross-validate: per fold search -> retrain -> test, then mean ± std tables"

#: Options that only the ray executor takes (dest -> flag).
RAY_OPTIONS = {"address": "--address", "cpus_per_task": "--cpus-per-task",
               "gpus_per_task": "--gpus-per-task", "max_parallel": "--max-parallel",
               "ship_artifacts": "--ship-artifacts"}


def _gpus(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="fold indices (default all)")
    p.add_argument("--baseline", action="append", default=[],
                   help="also run a baseline per fold (cnn, cnn_lstm, cnn_lstm_att); repeatable."
                        " With --scopes: once per fold, with CONFIG's settings")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/cv)")
    p.add_argument("--scopes", nargs="?", const="examples/scopes", default=None, metavar="DIR",
                   help="run every scope config in DIR (default examples/scopes: Table 6) "
                        "instead of CONFIG's space, then draw the Fig. 7 scatter")
    add_run_arguments(p, "cross-validation")
    g = p.add_argument_group("executor", "where the jobs (each fold's search, retraining, "
                                         "baselines) run; see docs/distributed.md")
    g.add_argument("--executor", choices=("serial", "ray"), default="serial",
                   help="serial: one after the other in this process (default); ray: as Ray "
                        "tasks, in parallel (pip install 'nasspeech[ray]')")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="ray: join the cluster at ADDR (auto, HOST:PORT or ray://HOST:PORT); "
                        "default: start a local Ray sized to this machine")
    g.add_argument("--cpus-per-task", type=positive_int, default=None, metavar="C",
                   help="ray: CPUs per job, also its torch threads unless --threads or the "
                        "config's threads say otherwise (default: those threads, else 1)")
    g.add_argument("--gpus-per-task", type=_gpus, default=None, metavar="G",
                   help="ray: GPUs per job (a fraction shares one; default 0)")
    g.add_argument("--max-parallel", type=positive_int, default=None, metavar="N",
                   help="ray: at most N jobs at once (default: as many as the cluster fits)")
    g.add_argument("--ship-artifacts", action="store_true", default=None,
                   help="ray: jobs work in a temp folder and send their files back even where "
                        "they see the run directory (default: only where they do not)")


def make_executor(args: argparse.Namespace):
    """The executor the flags ask for; ray-only flags with the serial executor are an error."""
    from nasspeech.cli.main import CLIError

    if args.executor == "serial":
        given = [flag for dest, flag in RAY_OPTIONS.items() if getattr(args, dest) is not None]
        if given:
            raise CLIError(f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} "
                           "only to --executor ray")
        return None
    from nasspeech.workflow.executors.ray import RayExecutor

    return RayExecutor(address=args.address, cpus_per_task=args.cpus_per_task,
                       gpus_per_task=args.gpus_per_task or 0.0, max_parallel=args.max_parallel,
                       ship_artifacts=bool(args.ship_artifacts))


def run(args: argparse.Namespace) -> int:
    from nasspeech.workflow.cv import run_cv
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.train import check_model_name

    if args.scopes:
        return _run_scopes(args)
    with workflow_errors():
        executor = make_executor(args)
        config = load_config(args.config, args)
        for k in args.folds or []:
            check_fold(config, k, "--folds")
        for name in args.baseline:
            check_model_name(name)
        data = load_run_data(config, progress=not args.quiet)
        res = run_cv(config, data, args.out or f"runs/{config.name}/cv", folds=args.folds,
                     baselines=tuple(args.baseline), progress=not args.quiet,
                     resume=args.resume, restart=args.restart, executor=executor)
    print(res.markdown)
    print(f"tables: {res.run_dir / 'results.md'}, {res.run_dir / 'results.json'}")
    return 0


def _run_scopes(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nasspeech.cli.main import CLIError
    from nasspeech.workflow.cv import run_scopes

    if args.tensorboard:
        raise CLIError("--tensorboard does not reach --scopes runs: set log.tensorboard: true "
                       "in the scope configs")
    configs = sorted(Path(args.scopes).glob("*.yaml"))
    if not configs:
        raise CLIError(f"no *.yaml scope configs in {Path(args.scopes).resolve()}")
    with workflow_errors():
        executor = make_executor(args)
        baseline_config = load_config(args.config, args) if args.baseline else None
        rows, plot = run_scopes(configs, args.out or "runs/scopes", folds=args.folds,
                                progress=not args.quiet, resume=args.resume,
                                restart=args.restart, threads=args.threads, executor=executor,
                                baselines=tuple(args.baseline), baseline_config=baseline_config)
    for r in rows:
        print(f"{r['name']:>16}: UA {r['ua_mean']:.2%} ± {r['ua_std']:.2%}, "
              f"{r['params']:,.0f} params")
    print(f"scatter: {plot}")
    return 0
