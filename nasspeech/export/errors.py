"""The error of the export and predict commands."""

from __future__ import annotations


class ExportError(ValueError):
    """A model that cannot be read, exported or run: the message names the file or op."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first line of the message``, at most ``limit`` characters."""
    text = str(exc).strip()
    line = text.splitlines()[0] if text else ""
    line = f"{type(exc).__name__}: {line}" if line else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."
