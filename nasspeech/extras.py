"""Optional dependencies (the ``pip install 'nasspeech[EXTRA]'`` extras): import one, or say
which extra brings it."""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtraError(ImportError):
    """A feature was asked for whose optional package is not installed."""


def require(module: str, extra: str, purpose: str, package: str | None = None) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` naming ``purpose``, the missing
    ``package`` (default: the module's top-level name) and the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        package = package or module.split(".")[0]
        raise MissingExtraError(
            f"{purpose} needs the {package!r} package, which is not installed; install it "
            f"with: pip install 'nasspeech[{extra}]'") from None
