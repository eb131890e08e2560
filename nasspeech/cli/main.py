"""The ``nasspeech`` command line. Each sub-command lives in ``nasspeech/cli/commands/<name>.py``.

A command module defines ``NAME`` (the sub-command), ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Every command also takes
``--import MODULE`` (repeatable); those modules, and the ``imports:`` of a run config given as
the command's ``config`` argument, are imported before the command runs.
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
        p.add_argument("--import", dest="imports", action="append", default=[],
                       metavar="MODULE",
                       help="import MODULE (a dotted name or a .py file) first, e.g. one that "
                            "registers ops; repeatable")
        p.set_defaults(_run=module.run)
    return parser


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def import_user_modules(args: argparse.Namespace) -> None:
    """``--import`` modules (from the current directory), then the ``imports:`` of the
    command's config file (from its folder). The file is parsed once: its mapping is left in
    ``args.config_data`` for the command (None if there is no such file or it does not
    parse; the command then reports the problem itself)."""
    from pathlib import Path

    from nasspeech.workflow.imports import ModuleImportError, import_modules

    args.config_data = None
    try:
        import_modules(args.imports)
        config = getattr(args, "config", None)
        if isinstance(config, str) and Path(config).is_file():
            import yaml

            from nasspeech.space.config import load_mapping

            try:
                args.config_data = load_mapping(config)
            except (ValueError, yaml.YAMLError):
                return  # the command reports an unreadable config itself
            names = args.config_data.get("imports") or []
            if isinstance(names, list):
                import_modules([str(n) for n in names], Path(config).resolve().parent,
                               origin=f"{config}: imports")
    except ModuleImportError as exc:
        raise CLIError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        import_user_modules(args)
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
