"""Table-driven bad-input cases: each case does one bad thing and names what must happen.

A case's ``run(tmp_path)`` performs the bad action (an API call, or ``cli(...)`` for a
command). The expectation is either an exception type plus a message fragment, or for CLI
cases an exit code plus a fragment of stderr. Every case also checks that no Python
traceback reached the user and that the message is short (one problem, one line or a few).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest


@dataclass(frozen=True)
class CLIResult:
    code: int
    stdout: str
    stderr: str


def cli(*argv: str | Path) -> CLIResult:
    """Run ``nasspeech ARGV`` in this process; exit code, stdout and stderr."""
    from nasspeech.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exc:  # argparse errors
            code = exc.code if isinstance(exc.code, int) else 1
    return CLIResult(int(code), out.getvalue(), err.getvalue())


@dataclass(frozen=True)
class Case:
    """One bad input.

    ``error``: the exception the API must raise, or ``None`` when ``run`` returns a
    :class:`CLIResult` whose ``code`` must equal ``exit_code``. ``match``: a regex
    (case-insensitive) that the message must contain. ``max_lines`` caps the message.
    """

    id: str
    run: Callable[[Path], Any]
    match: str
    error: type[BaseException] | None = None
    exit_code: int = 2
    max_lines: int = 4


def params(cases: Sequence[Case]) -> Any:
    ids = [c.id for c in cases]
    assert len(set(ids)) == len(ids), "duplicate case ids"
    return pytest.mark.parametrize("case", cases, ids=ids)


def check(case: Case, tmp_path: Path) -> None:
    """Run ``case`` and assert the expected, clear failure."""
    if case.error is not None:
        with pytest.raises(case.error) as info:
            case.run(tmp_path)
        message = str(info.value)
    else:
        result = case.run(tmp_path)
        assert isinstance(result, CLIResult), f"{case.id}: run() must return cli(...)"
        assert result.code == case.exit_code, (
            f"{case.id}: exit {result.code}, expected {case.exit_code}\n{result.stderr}"
        )
        message = result.stderr
    assert "Traceback (most recent call last)" not in message, f"{case.id}: traceback\n{message}"
    assert re.search(case.match, message, re.IGNORECASE | re.DOTALL), (
        f"{case.id}: {case.match!r} not in message:\n{message}"
    )
    lines = [line for line in message.strip().splitlines() if line.strip()]
    if lines and lines[0].startswith("usage:"):  # argparse's usage block, then its one error
        lines = [line for line in lines if ": error:" in line] or lines
    assert len(lines) <= case.max_lines, f"{case.id}: {len(lines)} lines of message:\n{message}"
