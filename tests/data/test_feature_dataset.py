"""The torch Dataset over features and the class count / weight helpers."""

import pytest
import torch
from torch.utils.data import DataLoader

from nasspeech.data import FeatureDataset, class_counts, class_weights


def test_dataset_pairs_features_with_class_indices():
    x = torch.randn(5, 1, 4, 4)
    ds = FeatureDataset(x, ["anger", "neutral", "sadness", 1, "anger"])
    assert len(ds) == 5 and ds.labels.tolist() == [0, 3, 2, 1, 0]
    xb, yb = next(iter(DataLoader(ds, batch_size=5)))
    assert torch.equal(xb, x) and yb.tolist() == [0, 3, 2, 1, 0]
    with pytest.raises(ValueError, match="5 feature rows but 4 labels"):
        FeatureDataset(x, [0, 1, 2, 3])
    with pytest.raises(ValueError, match="unknown class 'bored'"):
        FeatureDataset(x, ["bored"] * 5)


def test_counts_and_weights():
    labels = ["anger", "anger", "anger", "sadness"]
    assert class_counts(labels) == {"anger": 3, "happiness": 0, "sadness": 1, "neutral": 0}
    w = class_weights(labels)
    assert w.tolist() == pytest.approx([2 / 3, 0.0, 2.0, 0.0])
