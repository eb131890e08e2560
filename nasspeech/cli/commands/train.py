"""``nasspeech train CONFIG --genotype FILE``."""

from __future__ import annotations

import argparse

from nasspeech.cli.commands._run import load_config, workflow_errors
from nasspeech.cli.commands._tensorboard import add_tensorboard_flag, tensorboard_config

NAME = "train"
HELP = "retrain a genotype (or a baseline) on a fold's training set and test it"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON)")
    p.add_argument("--genotype", help="genotype.json written by `nasspeech search`")
    p.add_argument("--model", default=None,
                   help="searched (default) or a baseline: cnn, cnn_lstm, cnn_lstm_att")
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/fold_K/<model>)")
    p.add_argument("--quiet", action="store_true")
    add_tensorboard_flag(p)


def run(args: argparse.Namespace) -> int:
    import json

    from nasspeech.genotype import Genotype
    from nasspeech.space.derived import check_fits
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.train import run_train

    with workflow_errors():
        config = load_config(args.config)
        config = tensorboard_config(config, args.tensorboard)
        model = args.model or config.train.model
        genotype = None
        if model == "searched":
            if not args.genotype:
                from nasspeech.cli.main import CLIError

                raise CLIError("--genotype FILE is needed to train the searched model")
            genotype = Genotype.load(args.genotype)
            check_fits(config.space, genotype)
        out = args.out or f"runs/{config.name}/fold_{args.fold}/{model}"
        data = load_run_data(config, progress=not args.quiet)
        res = run_train(config, data, args.fold, out, genotype=genotype, model_name=model,
                        progress=not args.quiet)
    m = res.metrics
    print(json.dumps({k: m[k] for k in ("model", "fold", "ua", "wa", "params", "n_test")}))
    print(f"results: {res.run_dir / 'metrics.json'}, {res.run_dir / 'confusion.png'}")
    return 0
