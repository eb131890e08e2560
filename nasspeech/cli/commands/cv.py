"""``nasspeech cv CONFIG``."""

from __future__ import annotations

import argparse

from nasspeech.cli.commands._run import add_run_arguments, check_fold, load_config, workflow_errors

NAME = "cv"
HELP = "cross-validate: per fold search -> retrain -> test, then mean ± std tables"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="fold indices (default all)")
    p.add_argument("--baseline", action="append", default=[],
                   help="also run a baseline per fold (cnn, cnn_lstm, cnn_lstm_att); repeatable")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/cv)")
    p.add_argument("--scopes", nargs="?", const="examples/scopes", default=None, metavar="DIR",
                   help="run every scope config in DIR (default examples/scopes: Table 6) "
                        "instead of CONFIG's space, then draw the Fig. 7 scatter")
    add_run_arguments(p, "cross-validation")


def run(args: argparse.Namespace) -> int:
    from nasspeech.workflow.cv import run_cv
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.train import check_model_name

    if args.scopes:
        return _run_scopes(args)
    with workflow_errors():
        config = load_config(args.config, args)
        for k in args.folds or []:
            check_fold(config, k, "--folds")
        for name in args.baseline:
            check_model_name(name)
        data = load_run_data(config, progress=not args.quiet)
        res = run_cv(config, data, args.out or f"runs/{config.name}/cv", folds=args.folds,
                     baselines=tuple(args.baseline), progress=not args.quiet,
                     resume=args.resume, restart=args.restart)
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
        rows, plot = run_scopes(configs, args.out or "runs/scopes", folds=args.folds,
                                progress=not args.quiet, resume=args.resume,
                                restart=args.restart, threads=args.threads)
    for r in rows:
        print(f"{r['name']:>16}: UA {r['ua_mean']:.2%} ± {r['ua_std']:.2%}, "
              f"{r['params']:,.0f} params")
    print(f"scatter: {plot}")
    return 0
