"""UA / WA / confusion on hand-computed cases, and parameter counting."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from nasspeech.metrics import classification_report, count_parameters

CLASSES = ["anger", "happiness", "sadness", "neutral"]


def test_balanced_case():
    #        true: a a h h s s n n ; pred: a h h h s n n n
    y_true = [0, 0, 1, 1, 2, 2, 3, 3]
    y_pred = [0, 1, 1, 1, 2, 3, 3, 3]
    r = classification_report(y_true, y_pred, CLASSES)
    assert r["wa"] == pytest.approx(6 / 8)
    assert r["ua"] == pytest.approx((0.5 + 1 + 0.5 + 1) / 4)
    assert r["per_class_recall"] == {"anger": 0.5, "happiness": 1.0, "sadness": 0.5,
                                     "neutral": 1.0}
    assert r["confusion"] == [[1, 1, 0, 0], [0, 2, 0, 0], [0, 0, 1, 1], [0, 0, 0, 2]]
    assert r["n"] == 8 and r["class_names"] == CLASSES
    json.dumps(r)  # JSON-able


def test_imbalanced_ua_differs_from_wa():
    """8 neutral all right, 2 anger both wrong: WA = 8/10 but UA = (0 + 1) / 2."""
    y_true = np.array([3] * 8 + [0, 0])
    y_pred = np.array([3] * 8 + [3, 3])
    r = classification_report(y_true, y_pred, CLASSES)
    assert r["wa"] == pytest.approx(0.8)
    assert r["ua"] == pytest.approx(0.5)
    assert r["confusion"][0] == [0, 0, 0, 2] and r["confusion"][3] == [0, 0, 0, 8]
    assert r["support"] == {"anger": 2, "happiness": 0, "sadness": 0, "neutral": 8}


def test_absent_class_is_left_out_of_ua():
    """No true sadness: its recall is None and UA averages the 3 present classes; a wrong
    prediction *of* sadness still counts against the true class."""
    y_true = torch.tensor([0, 0, 1, 1, 1, 3])
    y_pred = torch.tensor([0, 2, 1, 1, 0, 3])
    r = classification_report(y_true, y_pred, CLASSES)
    assert r["per_class_recall"]["sadness"] is None
    assert r["ua"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert r["wa"] == pytest.approx(4 / 6)
    assert r["confusion"][0] == [1, 0, 1, 0] and r["confusion"][2] == [0, 0, 0, 0]


def test_accepts_tensors_arrays_lists_and_float_labels():
    a = classification_report(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0]), ["x", "y"])
    b = classification_report(np.array([0.0, 1.0, 1.0]), [0, 1, 0], ["x", "y"])
    assert a == b and a["ua"] == pytest.approx(0.75)


@pytest.mark.parametrize("y_true, y_pred, names, match", [
    ([0, 1], [0], ["a", "b"], "y_true has 2 labels but y_pred has 1"),
    ([], [], ["a", "b"], "no samples"),
    ([0, 2], [0, 1], ["a", "b"], "y_true holds label 2 outside 0..1"),
    ([0, 1], [0, -1], ["a", "b"], "y_pred holds label -1"),
    ([[0.1, 0.9]], [1], ["a", "b"], "argmax"),
    ([0.5, 1], [0, 1], ["a", "b"], "integer class indices"),
    ([0, 1], [0, 1], ["a", "a"], "unique"),
])
def test_bad_input(y_true, y_pred, names, match):
    with pytest.raises(ValueError, match=match):
        classification_report(y_true, y_pred, names)


def test_count_parameters():
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))  # 16 + 10
    assert count_parameters(model) == 26
    model[0].weight.requires_grad_(False)
    assert count_parameters(model) == 14
    assert count_parameters(model, trainable_only=False) == 26
    shared = nn.Linear(2, 2)
    assert count_parameters(nn.Sequential(shared, shared)) == 6  # shared weights once
    with pytest.raises(TypeError, match="lazy"):
        count_parameters(nn.LazyLinear(3))
