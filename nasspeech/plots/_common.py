"""Shared plotting set-up: the non-interactive Agg backend and saving a figure."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from nasspeech.io import atomic_write_with


def save(fig: Figure, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` to ``path`` atomically (parent folders created), close it, return the Path."""
    path = Path(path)
    fmt = path.suffix.lstrip(".") or "png"
    try:
        atomic_write_with(path, lambda fh: fig.savefig(fh, format=fmt, dpi=dpi,
                                                       bbox_inches="tight"))
    finally:
        plt.close(fig)
    return path


__all__ = ["plt", "save"]
