"""Every ``--flag`` a message suggests exists on each command that can show the message.

The strings of every module of the package (messages, f-strings, argparse help; not
docstrings, not the option names being defined) are scanned for ``--flags``. A module's
strings can reach the user through every command whose import closure (function-local imports
included) contains it, so each flag must exist on each of those commands' parsers."""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

from nasspeech.cli.main import _command_modules, build_parser

PKG = Path(__file__).resolve().parents[2] / "nasspeech"
FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*[a-z0-9])")


def module_of(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_of(p): p for p in PKG.rglob("*.py")}


@cache
def tree(name: str) -> ast.Module:
    return ast.parse(MODULES[name].read_text())


def imported(name: str) -> set[str]:
    """The package modules ``name`` imports, anywhere in it."""
    found = set()
    for node in ast.walk(tree(name)):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            base = node.module
            if node.level:  # relative import
                pkg = name.split(".")[: len(name.split(".")) - node.level + (
                    MODULES[name].name == "__init__.py")]
                base = ".".join([*pkg, node.module])
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:
                t = t.rpartition(".")[0]
            if t:
                found.add(t)
                parts = t.split(".")  # importing a module runs its packages' __init__
                found.update(".".join(parts[:i]) for i in range(1, len(parts))
                             if ".".join(parts[:i]) in MODULES)
    return found


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo.extend(imported(m) - seen)
    return seen


def _docstrings(module: ast.Module) -> set[int]:
    ids = set()
    for node in ast.walk(module):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                ids.add(id(body[0].value))
    return ids


def _option_names(module: ast.Module) -> set[int]:
    """The option strings being defined: positional arguments of ``add_argument``."""
    ids = set()
    for node in ast.walk(module):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "add_argument"):
            ids.update(id(a) for a in node.args)
    return ids


def suggested_flags(module: ast.Module) -> list[tuple[int, str, str]]:
    """(line, flag, text) for each ``--flag`` in the module's strings."""
    skip = _docstrings(module) | _option_names(module)
    out = []
    for node in ast.walk(module):
        if id(node) in skip:
            continue
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
            skip.update(id(v) for v in node.values)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        out += [(node.lineno, f"--{m}", text) for m in FLAG.findall(text)]
    return out


@cache
def command_flags() -> dict[str, set[str]]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and isinstance(a.choices, dict))
    return {name: {o for a in p._actions for o in a.option_strings}
            for name, p in sub.choices.items()}


def command_module(command: str) -> str:
    return next(m.__name__ for m in _command_modules() if m.NAME == command)


#: ``nasspeech CMD --flag`` in a message names another command's flag.
OTHER_COMMAND = re.compile(r"nasspeech ([a-z][a-z-]*) (--[a-z][a-z0-9-]*)")

#: (command, module) pairs: plan imports load_space/resolve_gpu from the estimate command,
#: whose own help and run() (which mention --list-gpus) never reach plan.
PLAN_ESTIMATE = ("plan", "nasspeech.cli.commands.estimate")

#: Flags of other programs that messages quote (``tensorboard --logdir``, ``ray start --head``).
FOREIGN = {"--logdir", "--head"}

#: (command, module) pairs whose import link carries no message to that command: export and
#: predict only read a finished run directory (they import workflow.train for build_model,
#: never open, resume or restart a run), and predict never writes an export.
UNREACHABLE = {
    (cmd, mod) for cmd in ("export", "predict") for mod in (
        "nasspeech.workflow.rundir", "nasspeech.workflow.resume", "nasspeech.workflow.train",
        "nasspeech.observe.tensorboard")
} | {("predict", "nasspeech.export.exporter"), PLAN_ESTIMATE}


def missing_flags() -> list[str]:
    problems = []
    for command, flags in command_flags().items():
        for name in sorted(closure(command_module(command))):
            if (command, name) in UNREACHABLE:
                continue
            for line, flag, text in suggested_flags(tree(name)):
                named = {f for c, f in OTHER_COMMAND.findall(text)
                         if f in command_flags().get(c, set())}
                if flag in named:  # `nasspeech estimate --list-gpus`: that command's flag
                    continue
                if flag not in flags and flag not in FOREIGN:
                    problems.append(f"{MODULES[name].relative_to(PKG.parent)}:{line}: {flag} "
                                    f"is not an option of `nasspeech {command}`: {text!r}")
    return problems


def test_every_suggested_flag_exists_on_the_commands_that_can_show_it():
    assert missing_flags() == []


def test_the_scan_sees_the_messages():
    """The run-directory message reaches search, train, cv and demo, and its flags count."""
    rundir = [f for _, f, _ in suggested_flags(tree("nasspeech.workflow.rundir"))]
    assert {"--resume", "--restart", "--out"} <= set(rundir)
    for command in ("search", "train", "cv", "demo"):
        assert "nasspeech.workflow.rundir" in closure(command_module(command))
    assert "--import" in command_flags()["estimate"]


@pytest.mark.parametrize("source, flags", [
    ('raise CLIError(f"pass --bogus-flag to {x}")', ["--bogus-flag"]),
    ('p.add_argument("--out", help="see --resume")', ["--resume"]),
    ('"""Docstring: --ignored."""\nx = "a-b --c1 -- not"', ["--c1"]),
])
def test_the_scanner_finds_flags_in_messages(source, flags):
    assert [f for _, f, _ in suggested_flags(ast.parse(source))] == flags
