"""The ``nasspeech`` command line. Each sub-command lives in ``nasspeech/cli/commands/<name>.py``.

A command module defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType

import nasspeech.cli.commands as commands_pkg


def _command_modules() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"{commands_pkg.__name__}.{info.name}")
        for info in pkgutil.iter_modules(commands_pkg.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: m.NAME)


def build_parser() -> argparse.ArgumentParser:
    from nasspeech import __version__

    parser = argparse.ArgumentParser(
        prog="nasspeech", description="Differentiable neural architecture search for speech."
    )
    parser.add_argument("--version", action="version", version=f"nasspeech {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in _command_modules():
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except CLIError as exc:
        print(f"nasspeech {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"nasspeech {args.command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `nasspeech ops --json | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
