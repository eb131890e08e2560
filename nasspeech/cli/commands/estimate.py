"""``nasspeech estimate CONFIG``: predict the GPU memory of a search before running it."""

from __future__ import annotations

import argparse
import json
import sys

from nasspeech.cli.main import CLIError

NAME = "estimate"
HELP = "estimate the GPU memory of a search step (peak, fit, largest batch)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?",
                        help="run config (YAML/JSON) with a space: section, or a space")
    parser.add_argument("--gpu", default="a100-40gb",
                        help="GPU name (see --list-gpus) or a capacity with a unit, such as "
                             "24GiB or 24GB")
    parser.add_argument("--list-gpus", action="store_true",
                        help="list the known GPUs with their capacities and exit")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the config's search.batch_size, else 64")
    parser.add_argument("--order", type=int, choices=(1, 2), default=None,
                        help="DARTS order; default: the config's search.order, else 2")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="forward passes in fp32 or under bf16 autocast; default: the "
                             "config's search.precision, else fp32")
    parser.add_argument("--no-max-batch", action="store_true",
                        help="skip the largest-batch search (one trace instead of three)")
    parser.add_argument("--per-op", action="store_true",
                        help="also list what removing each candidate op would save")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_nproc_argument(parser)


def add_nproc_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="the search runs data-parallel on N GPUs (search --nproc N): "
                             "estimate one process's slice of the batch; sizes are per GPU")


def check_nproc(batch_size: int, nproc: int) -> None:
    from nasspeech.search.distributed import DistributedSetupError, check_world

    if nproc < 1:
        raise CLIError(f"--nproc must be >= 1, got {nproc}")
    try:
        check_world(batch_size, nproc, "the batch size")
    except DistributedSetupError as exc:
        raise CLIError(f"--nproc {nproc}: {exc}") from None


def load_config(config: str, data: dict | None = None):
    """The run config of ``config`` (a run config or a space file; ``data``: its mapping if
    already read), with user-facing errors."""
    from nasspeech.memory.estimate import resolve_config

    try:
        return resolve_config(config, data)
    except FileNotFoundError as exc:
        raise CLIError(str(exc)) from None
    except ValueError as exc:  # incl. SpaceConfigError: one line per field
        raise CLIError(str(exc)) from None


def resolve_gpu(name: str):
    from nasspeech.memory.profiles import UnknownGpuError, get_profile

    try:
        return get_profile(name)
    except (UnknownGpuError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from nasspeech.memory.estimate import estimate
    from nasspeech.memory.report import render

    if args.list_gpus:
        from nasspeech.memory.profiles import profile_table

        print(profile_table())
        return 0
    if args.config is None:
        raise CLIError("a config is required (or --list-gpus)")
    config = load_config(args.config, getattr(args, "config_data", None))
    profile = resolve_gpu(args.gpu)
    if args.batch_size is not None and args.batch_size < 1:
        raise CLIError(f"--batch-size must be >= 1, got {args.batch_size}")
    check_nproc(args.batch_size or config.search.batch_size, args.nproc)
    progress = None if args.json else (lambda msg: print(f"... {msg}", file=sys.stderr))
    result = estimate(config, args.batch_size, profile, args.order,
                      max_batch=not args.no_max_batch, per_op=args.per_op, progress=progress,
                      world_size=args.nproc, precision=args.precision)
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        if args.nproc > 1:
            print(f"Per GPU, for a data-parallel search on {args.nproc} GPUs (batch "
                  f"{result.batch_size} per process):")
        print(render(result))
    return 0
