"""Evaluation metrics of the emoDARTS paper (Section 5): UA, WA, confusion, parameter count.

- **UA** (unweighted accuracy) = mean per-class recall, averaged over the classes that occur
  in ``y_true``. A class with no true sample has no recall: its ``per_class_recall`` is
  ``None`` and it does not enter the UA (so a fold missing a class is not penalised with a
  0 recall nor rewarded with a 1). Its column of the confusion matrix still counts
  predictions of it as errors of the true classes.
- **WA** (weighted accuracy) = accuracy = correct / n.

All values are fractions in [0, 1]; tables and plots show them in percent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn


def _labels(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    arr = np.asarray(values)
    if arr.ndim != 1:
        hint = " (take argmax over the class axis of scores first)" if arr.ndim == 2 else ""
        raise ValueError(f"{name} must be a 1-D sequence of class indices, got shape "
                         f"{arr.shape}{hint}")
    integral = np.issubdtype(arr.dtype, np.integer) or (
        np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr)))
    if arr.size and not integral:
        raise ValueError(f"{name} must hold integer class indices, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def classification_report(y_true: Any, y_pred: Any, class_names: Sequence[str]) -> dict[str, Any]:
    """UA, WA, per-class recall and confusion of integer labels (tensors, arrays or lists).

    Returns a JSON-able dict: ``ua``, ``wa`` (floats), ``per_class_recall`` (class name ->
    float, or ``None`` for a class absent from ``y_true``), ``support`` (class name -> true
    count), ``confusion`` (list of lists, rows = true class, columns = predicted class, in
    ``class_names`` order), ``n`` (samples) and ``class_names``."""
    names = [str(c) for c in class_names]
    k = len(names)
    if k < 1 or len(set(names)) != k:
        raise ValueError(f"class_names must be non-empty and unique, got {list(class_names)}")
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    if t.size == 0:
        raise ValueError("no samples: y_true and y_pred are empty")
    for arr, name in ((t, "y_true"), (p, "y_pred")):
        bad = arr[(arr < 0) | (arr >= k)]
        if bad.size:
            raise ValueError(f"{name} holds label {int(bad[0])} outside 0..{k - 1} "
                             f"({k} class_names: {names})")
    confusion = np.zeros((k, k), dtype=np.int64)
    np.add.at(confusion, (t, p), 1)
    support = confusion.sum(axis=1)
    recall = {n: (float(confusion[i, i] / support[i]) if support[i] else None)
              for i, n in enumerate(names)}
    present = [r for r in recall.values() if r is not None]
    return {
        "ua": float(np.mean(present)),
        "wa": float(np.trace(confusion) / t.size),
        "per_class_recall": recall,
        "support": {n: int(s) for n, s in zip(names, support)},
        "confusion": confusion.tolist(),
        "n": int(t.size),
        "class_names": names,
    }


def count_parameters(model: nn.Module, trainable_only: bool = True) -> int:
    """Number of parameters (each shared tensor once); only ``requires_grad`` ones by default,
    as the paper counts "all trainable parameters"."""
    total = 0
    for name, p in model.named_parameters():
        if isinstance(p, nn.parameter.UninitializedParameter):
            raise TypeError(f"parameter {name!r} is lazy and not initialised yet: run one "
                            "forward pass before counting")
        if p.requires_grad or not trainable_only:
            total += p.numel()
    return total
