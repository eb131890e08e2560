"""``nasspeech search CONFIG``; ``--nproc N`` or torchrun: data-parallel over N processes."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from nasspeech.cli.commands._run import (
    add_run_arguments,
    check_fold,
    load_config,
    positive_int,
    workflow_errors,
)
from nasspeech.cli.main import CLIError
from nasspeech.search.distributed import BACKENDS

if TYPE_CHECKING:
    import torch

    from nasspeech.config import RunConfig

NAME = "search"
HELP = "DARTS search on one fold's search set (checkpointed every epoch, --resume continues)"


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="run config (YAML/JSON), e.g. examples/emodarts.yaml")
    p.add_argument("--fold", type=int, default=0, help="speaker-independent fold (default 0)")
    p.add_argument("--out", default=None, help="run directory (default runs/<name>/fold_K/search)")
    add_run_arguments(p, "search")
    dp = p.add_argument_group("data-parallel search (docs/distributed.md)")
    dp.add_argument("--nproc", type=positive_int, default=None, metavar="N",
                    help="search in N local processes, each on its slice of every batch "
                         "(one GPU each on CUDA; 1 CPU thread each unless --threads); under "
                         "torchrun leave it out")
    dp.add_argument("--backend", choices=BACKENDS, default="auto",
                    help="torch.distributed backend (auto: nccl with a GPU per process, else "
                         "gloo)")
    dp.add_argument("--dist-timeout", type=positive_seconds, default=600.0, metavar="S",
                    help="seconds a process waits for the others in a collective before the "
                         "group stops (default 600)")


@contextlib.contextmanager
def distributed_errors() -> Iterator[None]:
    """Group set-up errors and a failed or mismatched process, as one-line CLI errors."""
    from nasspeech.search.distributed import (
        DistributedSetupError,
        RankFailedError,
        RankMismatchError,
    )
    from nasspeech.workflow.launch import LaunchError

    try:
        yield
    except (DistributedSetupError, RankFailedError, RankMismatchError, LaunchError) as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from nasspeech.search.distributed import Group, rank_env
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.launch import LAUNCHED_ENV
    from nasspeech.workflow.search import run_search

    with workflow_errors(), distributed_errors():
        config = load_config(args.config, args)
        check_fold(config, args.fold, "--fold")
        out = args.out or f"runs/{config.name}/fold_{args.fold}/search"
        env = rank_env()
        if args.nproc is not None and env is not None:
            raise CLIError(f"--nproc {args.nproc}: this process already belongs to a group "
                           f"(RANK={env.rank}, WORLD_SIZE={env.world_size} are set, e.g. by "
                           "torchrun): leave --nproc out")
        if args.nproc is not None and args.nproc > 1:
            return _launch(args, config, out)
        group = None
        if env is not None and env.world_size > 1:
            group = Group.start(env, _device(config), args.backend, args.dist_timeout)
        try:
            main = group is None or group.is_main
            quiet_data = args.quiet or not main or os.environ.get(LAUNCHED_ENV) == "1"
            data = load_run_data(config, progress=not quiet_data)
            res = run_search(config, data, args.fold, out, resume=args.resume,
                             restart=args.restart, progress=not args.quiet and main,
                             group=group)
        finally:
            if group is not None:
                group.close()
    if main:
        print(f"genotype: {res.run_dir / 'genotype.json'} ({res.epochs_run} epochs"
              f"{', ' + res.stopped if res.stopped else ''})")
    return 0


def _device(config: RunConfig) -> torch.device:
    from nasspeech.workflow.devices import resolve_device

    try:
        return resolve_device(config.device)
    except RuntimeError as exc:
        raise CLIError(str(exc)) from None


def _launch(args: argparse.Namespace, config: RunConfig, out: str) -> int:
    """Check what can be checked once, fill the feature cache once, start the processes."""
    from nasspeech.search.distributed import check_world, choose_backend
    from nasspeech.workflow.datasets import load_run_data
    from nasspeech.workflow.launch import launch

    check_world(config.search.batch_size, args.nproc)
    choose_backend(args.backend, _device(config), args.nproc)
    load_run_data(config, progress=not args.quiet)

    def argv(rank: int) -> list[str]:
        cmd = ["search", args.config, "--fold", str(args.fold), "--out", out,
               "--backend", args.backend, "--dist-timeout", str(args.dist_timeout)]
        cmd += ["--resume"] if args.resume else ["--restart"] if args.restart else []
        cmd += ["--threads", str(args.threads)] if args.threads else []
        cmd += ["--quiet"] if args.quiet or rank else []
        cmd += ["--tensorboard"] if args.tensorboard else []
        for module in args.imports:
            cmd += ["--import", module]
        return cmd

    return launch(argv, args.nproc, f"nasspeech {NAME}")
