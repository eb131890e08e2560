"""A torch Dataset over extracted features and class labels."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from nasspeech.data.items import CLASSES


def label_indices(labels: Sequence[str | int] | torch.Tensor) -> torch.Tensor:
    """Class indices (long) of class names or indices."""
    if isinstance(labels, torch.Tensor):
        return labels.long()
    out = []
    for lab in labels:
        if isinstance(lab, str):
            if lab not in CLASSES:
                raise ValueError(f"unknown class {lab!r}; classes are {CLASSES}")
            out.append(CLASSES.index(lab))
        else:
            out.append(int(lab))
    return torch.tensor(out, dtype=torch.long)


class FeatureDataset(Dataset):
    """``(features[i], label index)`` pairs; every feature value must be finite."""

    def __init__(self, features: torch.Tensor, labels: Sequence[str | int] | torch.Tensor):
        self.features = features
        self.labels = label_indices(labels)
        if len(self.labels) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(self.labels)} labels")
        bad = (~torch.isfinite(features.reshape(len(features), -1))).any(dim=1).nonzero()
        if len(bad):
            rows = ", ".join(str(i) for i in bad.flatten().tolist()[:5])
            raise ValueError(f"feature row{'s' if len(bad) > 1 else ''} {rows} "
                             f"hold{'' if len(bad) > 1 else 's'} NaN or inf")

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.features[i], self.labels[i]


def class_counts(labels: Sequence[str | int] | torch.Tensor) -> dict[str, int]:
    """Count per class name (every class listed, zeros included)."""
    counts = Counter(label_indices(labels).tolist())
    return {c: counts.get(i, 0) for i, c in enumerate(CLASSES)}


def class_weights(labels: Sequence[str | int] | torch.Tensor) -> torch.Tensor:
    """Inverse-frequency weights (mean 1 over present classes) for a weighted cross-entropy;
    absent classes get 0."""
    counts = torch.tensor(list(class_counts(labels).values()), dtype=torch.float32)
    present = counts > 0
    w = torch.zeros_like(counts)
    w[present] = counts[present].sum() / (present.sum() * counts[present])
    return w
