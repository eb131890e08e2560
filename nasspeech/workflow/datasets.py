"""Fold tensors and batch streams.

Shuffles use a generator seeded by (seed, epoch), independent of the global RNG, so a
resumed run sees exactly the batches an uninterrupted one would. Evaluation batches keep
every sample (no dropped last batch).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from nasspeech.data.folds import Fold
from nasspeech.workflow.errors import WorkflowError

Batch = tuple[torch.Tensor, torch.Tensor]


class FoldIndexError(WorkflowError, IndexError):
    """A fold index the data does not have."""


@dataclass
class RunData:
    """All features (N x 1 x F x T), integer labels, class names and the folds (as
    :func:`nasspeech.data.folds_for` made them)."""

    x: torch.Tensor
    y: torch.Tensor
    class_names: list[str]
    folds: list[Fold]

    def fold(self, k: int) -> Fold:
        if not 0 <= k < len(self.folds):
            raise FoldIndexError(f"fold {k} does not exist: the data has {len(self.folds)} "
                                 f"folds (0..{len(self.folds) - 1})")
        return self.folds[k]


def train_indices(split: Fold, what: str = "train") -> list[int]:
    """What a model is retrained on: ``train``, the fold's training split (the paper's
    protocol), or ``search+train``, its search and training splits together (DARTS practice).
    Never the fold's test speakers."""
    if what == "train":
        return list(split.train)
    if what == "search+train":
        return sorted([*split.search, *split.train])
    raise ValueError(f"train.data must be 'train' or 'search+train', got {what!r}")


def _generator(seed: int, salt: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(salt))


def split_search(indices: Sequence[int], alpha_fraction: float, seed: int
                 ) -> tuple[list[int], list[int]]:
    """A seeded shuffle of the search set into (weight part, alpha part)."""
    idx = list(indices)
    if len(idx) < 2:
        raise ValueError(f"the search set needs at least 2 samples, got {len(idx)}")
    perm = torch.randperm(len(idx), generator=_generator(seed, 7)).tolist()
    n_alpha = min(max(1, round(alpha_fraction * len(idx))), len(idx) - 1)
    shuffled = [idx[i] for i in perm]
    return sorted(shuffled[n_alpha:]), sorted(shuffled[:n_alpha])


class BatchStream:
    """Mini-batches of ``x[indices]``; shuffled per epoch for training.

    ``drop_last`` is never used. In training a final batch of one sample is merged into the
    previous batch (batch-norm cannot train on a single sample).
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, indices: Sequence[int],
                 batch_size: int, shuffle: bool, seed: int = 0, salt: int = 0) -> None:
        if len(indices) == 0:
            raise ValueError("no samples to iterate over")
        self.x, self.y = x, y
        self.indices = torch.as_tensor(list(indices), dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed, self.salt = seed, salt

    def _chunks(self, order: torch.Tensor) -> list[torch.Tensor]:
        chunks = list(order.split(self.batch_size))
        if self.shuffle and len(chunks) > 1 and len(chunks[-1]) == 1:
            chunks[-2] = torch.cat([chunks[-2], chunks.pop()])
        return chunks

    def __len__(self) -> int:
        return len(self._chunks(self.indices))

    def epoch(self, epoch: int = 0) -> Iterator[Batch]:
        order = self.indices
        if self.shuffle:
            perm = torch.randperm(len(order), generator=_generator(self.seed, 1000 * epoch
                                                                   + self.salt + 1))
            order = order[perm]
        for chunk in self._chunks(order):
            dev = self.x.device
            chunk = chunk.to(dev)
            yield self.x.index_select(0, chunk), self.y.index_select(0, chunk)

    __iter__ = epoch


def eval_stream(x: torch.Tensor, y: torch.Tensor, indices: Sequence[int],
                batch_size: int) -> BatchStream:
    """Every sample of ``indices`` once, in order."""
    return BatchStream(x, y, indices, batch_size, shuffle=False)


def load_run_data(config: Any, progress: bool = True, workers: int | None = None) -> RunData:
    """Load the corpus of ``config.data``, extract (cached) features and make the folds."""
    from nasspeech import data as D

    dc = config.data
    items, load_report = D.load_corpus(dc, progress)
    if progress:
        print(load_report, flush=True)
    x, report = D.extract_features(items, dc.features, dc.cache_dir, workers or dc.workers,
                                   progress)
    items = [items[i] for i in report.kept]  # skipped clips were reported, with their reason
    class_names = list(D.CLASSES)
    lookup = {name: i for i, name in enumerate(class_names)}
    y = torch.tensor([lookup[item.label] for item in items], dtype=torch.long)
    folds = D.folds_for(items, dc)  # honours data.fold_file
    return RunData(x.float(), y, class_names, folds)
