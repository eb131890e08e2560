"""Plots and tables written by the runs (drawn with nasspeech.plots / nasspeech.reporting)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def try_plot(what: str, draw: Callable[[], Any], path: Path) -> Path | None:
    """Draw a figure; a failure is reported (never silent) and does not stop the run."""
    try:
        draw()
    except Exception as exc:  # noqa: BLE001 - a plot must not lose a finished run
        print(f"warning: could not draw {what} ({path}): {type(exc).__name__}: {exc}",
              file=sys.stderr)
        return None
    return path
