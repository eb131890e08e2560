"""Optional dependencies (the ``pip install 'nasspeech[EXTRA]'`` extras): import one, or say
which extra brings it."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """A feature was asked for whose optional package is not installed."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``purpose`` and the extra."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(
            f"{purpose} needs the {module.split('.')[0]!r} package, which is not installed "
            f"({exc}); install it with: pip install 'nasspeech[{extra}]'") from None
