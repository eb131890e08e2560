"""``nasspeech plan CONFIG --gpu NAME``: configurations of a search that fit a GPU."""

from __future__ import annotations

import argparse
import sys

from nasspeech.cli.commands.estimate import (
    add_nproc_argument,
    check_nproc,
    load_config,
    resolve_gpu,
)
from nasspeech.cli.main import CLIError

NAME = "plan"
HELP = "propose ranked configurations (fewer ops/nodes/cells, partial channels, batch) that fit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="run config (YAML/JSON) with a space: section, or a space")
    parser.add_argument("--gpu", required=True,
                        help="GPU name (e.g. a100-40gb, t4; see `nasspeech estimate "
                             "--list-gpus`) or a capacity with a unit, such as 24GiB")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the config's search.batch_size, else 64")
    parser.add_argument("--order", type=int, choices=(1, 2), default=None)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default=None,
                        help="default: the config's search.precision (fp32 configs also get "
                             "a bf16 plan)")
    parser.add_argument("--top", type=int, default=10, help="how many plans to show")
    parser.add_argument("--limit", type=int, default=None,
                        help="trace at most this many candidates (each costs one trace)")
    add_nproc_argument(parser)


def run(args: argparse.Namespace) -> int:
    from nasspeech.memory.planner import plan
    from nasspeech.memory.report import fmt_bytes

    config = load_config(args.config, getattr(args, "config_data", None))
    profile = resolve_gpu(args.gpu)
    batch = args.batch_size or config.search.batch_size
    if batch < 1:
        raise CLIError(f"--batch-size must be >= 1, got {batch}")
    check_nproc(batch, args.nproc)
    search = config.search
    if args.order:
        search = search.model_copy(update={"order": args.order})
    if args.precision:
        search = search.model_copy(update={"precision": args.precision})
    base, plans = plan(config.space, batch, profile, search, limit=args.limit,
                       progress=lambda m: print(f"... {m}", file=sys.stderr),
                       world_size=args.nproc)
    verdict = "fits" if base.fits else "does NOT fit"
    per = f" ({base.batch_size} per process on each of {args.nproc} GPUs; per GPU)" \
        if args.nproc > 1 else ""
    print(f"As given: batch {batch}{per}, order {search.order}, {search.precision}: "
          f"{fmt_bytes(base.total_bytes)} of "
          f"{fmt_bytes(base.capacity_bytes)} on {profile.name} -> {verdict}"
          f" (largest batch {base.max_batch_size}{' per process' if per else ''})")
    if not plans:
        print("No candidate plan fits; try a larger GPU or a smaller space.")
        return 1
    print(f"\n{'rank':>4}  {'plan':<44} {'batch':>5} {'total':>11} {'kept':>6}")
    for i, p in enumerate(plans[: args.top], 1):
        print(f"{i:>4}  {p.description:<44} {p.batch_size:>5} "
              f"{fmt_bytes(p.estimate.total_bytes):>11} {100 * p.kept:5.1f}%")
    print("\n'kept' = share of the search kept (ops x edges x cells / K x batch ratio).")
    return 0
