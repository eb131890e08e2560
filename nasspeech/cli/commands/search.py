"""``nasspeech search CONFIG``."""

from __future__ import annotations

import argparse

from nasspeech.cli.commands._run import load_config, workflow_errors
from nasspeech.cli.commands._tensorboard import add_tensorboard_flag, tensorboard_config

NAME = "search"
HELP = "DARTS search on one fold's search set (checkpointed every epoch, --resume continues)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON), e.g. examples/emodarts.yaml")
    p.add_argument("--fold", type=int, default=0, help="speaker-independent fold (default 0)")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/fold_K/search)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted search")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_tensorboard_flag(p)


def run(args: argparse.Namespace) -> int:
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.search import run_search

    with workflow_errors():
        config = load_config(args.config)
        config = tensorboard_config(config, args.tensorboard)
        out = args.out or f"runs/{config.name}/fold_{args.fold}/search"
        data = load_run_data(config, progress=not args.quiet)
        res = run_search(config, data, args.fold, out, resume=args.resume,
                         progress=not args.quiet)
    print(f"genotype: {res.run_dir / 'genotype.json'} ({res.epochs_run} epochs"
          f"{', ' + res.stopped if res.stopped else ''})")
    return 0
