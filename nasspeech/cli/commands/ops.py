"""``nasspeech ops``: list the registered candidate ops (built-in and from plugins)."""

from __future__ import annotations

import argparse
import json

from nasspeech.registry import FAMILY_LAYOUTS, Operation, list_ops

NAME = "ops"
HELP = "list the registered candidate ops (built-in and plugin ops)"

_COLUMNS = ("family", "name", "parametric", "source", "description")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--family", choices=sorted(FAMILY_LAYOUTS), help="only the ops of this family"
    )
    parser.add_argument(
        "--json", action="store_true",
        help="print a JSON list of objects (family, name, description, source, parametric, ...)",
    )


def format_table(ops: list[Operation]) -> str:
    """A plain-text table of ``ops``, one row per op."""
    rows = [_COLUMNS] + [
        (op.family, op.name, "yes" if op.parametric else "no", op.source, op.description)
        for op in ops
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(_COLUMNS) - 1)]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths)) + "  " + row[-1]
        for row in rows
    ]
    return "\n".join(line.rstrip() for line in lines)


def run(args: argparse.Namespace) -> int:
    ops = list_ops(args.family)
    if args.json:
        print(json.dumps([op.as_dict() for op in ops], indent=2))
    else:
        print(format_table(ops))
    return 0
