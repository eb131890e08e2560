"""What a resume may change: optimisation settings (learning rates, schedules, clipping,
epochs, warm-up, batch size...) yes; the space, the data, the seed or the fold no.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nasspeech.workflow.checkpoint import load_checkpoint
from nasspeech.workflow.errors import RunDirError
from nasspeech.workflow.rundir import CHECKPOINT

#: Settings that define what a search run computes on (its space, data, split and fold).
SEARCH_FIXED = ("space", "data", "seed", "search.alpha_fraction")
#: The same for a training run: plus the model it trains and what it trains on.
TRAIN_FIXED = ("space", "data", "seed", "train.model", "train.overrides", "train.drop_path",
               "train.baseline_options", "train.data")
#: Settings under a fixed section that do not change the data.
FREE = ("data.workers", "data.cache_dir")


def differences(old: Any, new: Any, where: str = "") -> list[str]:
    """Dotted paths at which two JSON-like values differ (lists of equal length per item)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [p for k in dict.fromkeys([*old, *new])
                for p in differences(old.get(k), new.get(k), f"{where}.{k}" if where else k)]
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [p for i, (a, b) in enumerate(zip(old, new)) for p in differences(a, b, f"{where}.{i}")]
    return [] if old == new else [where or "(config)"]


def _under(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + ".") for p in prefixes)


def _get(data: Any, path: str) -> Any:
    for key in path.split("."):
        if isinstance(data, list) and key.isdigit() and int(key) < len(data):
            data = data[int(key)]
        elif isinstance(data, dict):
            data = data.get(key)
        else:
            return None
    return data


def check_resume(run_dir: Path, ckpt: dict[str, Any], kind: str, fold: int,
                 config: dict[str, Any], fixed: Sequence[str],
                 same: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """Refuse a resume that changes a ``fixed`` setting (naming each), the run's kind or
    fold, or any of ``same`` (name -> value the checkpoint holds under that name); return the
    other changed settings as ``{path: [old, new]}``."""
    if ckpt.get("kind", kind) != kind:
        raise RunDirError(f"cannot resume {run_dir}: it holds a {ckpt.get('kind')} run, not "
                          f"a {kind} run; choose another --out")
    if ckpt.get("fold") != fold:
        raise RunDirError(f"cannot resume {run_dir}: it was started on fold {ckpt.get('fold')},"
                          f" not fold {fold}; resume it on its fold, or choose another --out")
    old = ckpt.get("config") or {}
    changed = differences(old, config)
    refused = [p for p in changed if _under(p, fixed) and not _under(p, FREE)]
    refused += [name for name, value in (same or {}).items() if ckpt.get(name) != value]
    if refused:
        raise RunDirError(
            f"cannot resume {run_dir}: {', '.join(refused)} changed since it started (the "
            "space, data, seed and folds must stay; optimisation settings may change); undo "
            "the change, or pass --restart to start over")
    return {p: [_get(old, p), _get(config, p)] for p in changed if not _under(p, FREE)}


def describe_changes(changes: dict[str, list[Any]]) -> str:
    """``search.lr 0.05 -> 0.01, search.epochs 20 -> 30``."""
    return ", ".join(f"{p} {a!r} -> {b!r}" for p, (a, b) in changes.items())


def resume_point(run_dir: Path, kind: str, fold: int, config: dict[str, Any],
                 fixed: Sequence[str], device: torch.device | str,
                 same: dict[str, Any] | None = None
                 ) -> tuple[dict[str, Any] | None, dict[str, list[Any]]]:
    """The checkpoint to continue from (``None``: the run starts from epoch 1) and the
    accepted changes (see :func:`check_resume`); both cases are reported on stderr."""
    if not (run_dir / CHECKPOINT).is_file():
        print(f"{run_dir} holds no checkpoint: starting it again from epoch 1", file=sys.stderr)
        return None, {}
    ckpt = load_checkpoint(run_dir / CHECKPOINT, device)
    changes = check_resume(run_dir, ckpt, kind, fold, config, fixed, same)
    if changes:
        print(f"resuming {run_dir} after epoch {ckpt['epoch']} with changed settings: "
              f"{describe_changes(changes)}", file=sys.stderr)
    return ckpt, changes
