"""User-facing warnings: one concise line that names the culprit, shown once per process.

Python prints a warning as ``path/to/module.py:LINE: Category: message`` plus the source
line that issued it, which points users at nasspeech's internals. Warnings of a
:class:`NasspeechWarning` subclass print as ``nasspeech: warning: message`` instead (every
other warning keeps Python's format), and :func:`warn_once` issues each distinct message
once per process however often the code path runs.
"""

from __future__ import annotations

import warnings

__all__ = ["NasspeechWarning", "warn_once"]


class NasspeechWarning(UserWarning):
    """A warning about the user's input (a plugin, a genotype): printed as one line."""


_reported: set[tuple[type[Warning], str]] = set()


def warn_once(message: str, category: type[NasspeechWarning] = NasspeechWarning) -> bool:
    """Warn with ``message`` unless this process already did; True when it warned."""
    key = (category, message)
    if key in _reported:
        return False
    _reported.add(key)
    warnings.warn(message, category, stacklevel=3)
    return True


_python_format = warnings.formatwarning


def _format(message, category, filename, lineno, line=None) -> str:
    if isinstance(category, type) and issubclass(category, NasspeechWarning):
        return f"nasspeech: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


if not getattr(warnings.formatwarning, "_nasspeech", False):
    _format._nasspeech = True  # type: ignore[attr-defined]
    warnings.formatwarning = _format
