"""Checkpoints: atomic and fsync-ed on write, loaded with ``weights_only=True``.

A checkpoint holds only tensors and plain containers (dicts, lists, numbers, strings), the
RNG states (torch, CUDA, numpy, python) included, converted to that form, so loading one can
never run code; a file holding anything else is refused with :class:`CheckpointError`.
"""

from __future__ import annotations

import pickle
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasspeech.io import atomic_write_with
from nasspeech.workflow.errors import WorkflowError


class CheckpointError(WorkflowError):
    """A checkpoint (or model/state file) that cannot or must not be loaded."""


def rng_state() -> dict[str, Any]:
    """The RNG states as tensors and plain values (``weights_only`` loads them)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": {"version": int(version), "state": torch.tensor(internal, dtype=torch.int64),
                   "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (a checkpoint loaded onto a GPU brings its RNG
    tensors there: they are taken back to the CPU, where every generator state lives)."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].cpu().tolist()),
                     p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` plus the RNG states atomically and fsync-ed: an interruption leaves
    the previous checkpoint intact."""
    payload = {**state, "rng": rng_state()}
    return atomic_write_with(path, lambda fh: torch.save(payload, fh), fsync=True)


def _reason(exc: BaseException) -> str:
    """The useful line of torch's (long, multi-line) message."""
    text = str(exc)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return f"it references {found.group(1)}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    return f"{type(exc).__name__}: {first.split('. ')[0]}" if first else type(exc).__name__


def load_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> dict[str, Any]:
    """Read a checkpoint, model or state file with ``weights_only=True`` (RNG states are not
    restored here). A file holding other objects, or no torch file at all, raises
    :class:`CheckpointError` naming it."""
    path = Path(path)
    try:
        data = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain "
            f"containers ({_reason(exc)}), which could run code when unpickled") from None
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a torn file
        raise CheckpointError(f"cannot read {path}: not a complete torch checkpoint "
                              f"({_reason(exc)})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of tensors, got {type(data).__name__}")
    return data


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
