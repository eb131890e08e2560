"""``nasspeech demo``."""

from __future__ import annotations

import argparse

from nasspeech.cli.commands._run import add_run_arguments, workflow_errors

NAME = "demo"
HELP = ("small emoDARTS search + retrain on the embedded synthetic corpus, compared with the "
        "CNN+LSTM-attention baseline (minutes on a CPU)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo",
                   help="run directory (default runs/demo; without --resume or --restart a "
                        "fresh one is chosen: runs/demo-2, ...)")
    p.add_argument("--folds", type=int, nargs="*", default=None, help="folds to run (default all 4)")
    add_run_arguments(p, "demo")


def run(args: argparse.Namespace) -> int:
    from nasspeech.workflow.demo import run_demo

    with workflow_errors():
        if args.tensorboard:  # checked before the run starts
            from nasspeech.observe import require_tensorboard

            require_tensorboard()
        run_demo(args.out, folds=args.folds, progress=not args.quiet, resume=args.resume,
                 restart=args.restart, threads=args.threads, tensorboard=args.tensorboard)
    return 0
