"""Plots: each writes a non-empty PNG at the given path; bad input gives a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from nasspeech.plots import (
    plot_alpha_history,
    plot_confusion,
    plot_scope_scatter,
    plot_training_curves,
)

PNG = b"\x89PNG\r\n\x1a\n"
CLASSES = ["anger", "happiness", "sadness", "neutral"]


def assert_png(path, expected):
    assert path == expected
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 2000


def _softmax(rng, edges, ops):
    z = rng.normal(size=(edges, ops))
    return (np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)).tolist()


def alpha_history(epochs=4):
    rng = np.random.default_rng(0)
    return [{"cnn.normal": _softmax(rng, 14, 3), "cnn.reduce": _softmax(rng, 14, 3),
             "seq.cell": _softmax(rng, 5, 4)} for _ in range(epochs)]


OP_NAMES = {"cnn.normal": ["sep_conv_3x3", "skip_connect", "none"],
            "cnn.reduce": ["max_pool_3x3", "skip_connect", "none"],
            "seq.cell": ["lstm_1", "rnn_att_1", "skip_connect", "none"]}


@pytest.mark.parametrize("normalise", [True, False])
def test_confusion(tmp_path, normalise):
    cm = [[5, 1, 0, 0], [2, 3, 0, 1], [0, 0, 0, 0], [1, 0, 2, 7]]  # an empty row too
    path = tmp_path / "sub" / "confusion.png"
    assert_png(plot_confusion(cm, CLASSES, path, title="fold 1", normalise=normalise), path)


def test_confusion_bad_input(tmp_path):
    with pytest.raises(ValueError, match="must be 4x4 for 4 class_names, got shape \\(3, 3\\)"):
        plot_confusion(np.eye(3), CLASSES, tmp_path / "c.png")
    with pytest.raises(ValueError, match="negative"):
        plot_confusion(-np.eye(4), CLASSES, tmp_path / "c.png")
    assert not (tmp_path / "c.png").exists()


def test_alpha_history(tmp_path):
    path = tmp_path / "alphas.png"
    assert_png(plot_alpha_history(alpha_history(), path, op_names=OP_NAMES), path)
    one = tmp_path / "one_epoch_no_names.png"
    assert_png(plot_alpha_history(alpha_history(1), one), one)


def test_alpha_history_bad_input(tmp_path):
    out = tmp_path / "a.png"
    with pytest.raises(ValueError, match="alpha history is empty"):
        plot_alpha_history([], out)
    wrong = {**OP_NAMES, "seq.cell": ["lstm_1", "skip_connect"]}
    with pytest.raises(ValueError, match="'seq.cell' has 4 ops per edge but op_names"):
        plot_alpha_history(alpha_history(), out, op_names=wrong)
    missing = {k: v for k, v in OP_NAMES.items() if k != "cnn.reduce"}
    with pytest.raises(ValueError, match="no entry for alpha set 'cnn.reduce'"):
        plot_alpha_history(alpha_history(), out, op_names=missing)
    history = alpha_history()
    del history[2]["seq.cell"]
    with pytest.raises(ValueError, match="epoch 3 has alpha sets"):
        plot_alpha_history(history, out, op_names=OP_NAMES)
    history = alpha_history()
    history[1]["seq.cell"] = history[1]["seq.cell"][:3]
    with pytest.raises(ValueError, match="'seq.cell' changes shape from \\(5, 4\\) to \\(3, 4\\)"):
        plot_alpha_history(history, out, op_names=OP_NAMES)
    assert not out.exists()


SCOPES = [  # Table 7, IEMOCAP (as fractions)
    {"name": "emoDARTS", "ua_mean": 0.7655, "ua_std": 0.0403, "params": 1_014_556},
    {"name": "LSTM Only", "ua_mean": 0.6742, "ua_std": 0.0576, "params": 2_939_372},
    {"name": "RNN-Att. Only", "ua_mean": 0.3614, "ua_std": 0.1097, "params": 29_324},
]


def test_scope_scatter(tmp_path):
    path = tmp_path / "scopes.png"
    assert_png(plot_scope_scatter(SCOPES, path, title="IEMOCAP"), path)


def test_scope_scatter_bad_input(tmp_path):
    with pytest.raises(ValueError, match="rows is empty"):
        plot_scope_scatter([], tmp_path / "s.png")
    with pytest.raises(ValueError, match=r"scope row 0 \('x'\) lacks \['params'\]"):
        plot_scope_scatter([{"name": "x", "ua_mean": 0.5, "ua_std": 0.1}], tmp_path / "s.png")
    with pytest.raises(ValueError, match="'emo': ua_mean=76.5 must be a fraction"):
        plot_scope_scatter([{"name": "emo", "ua_mean": 76.5, "ua_std": 4.0, "params": 1}],
                           tmp_path / "s.png")


def test_training_curves(tmp_path):
    rows = [{"epoch": e, "train_loss": 1.5 / e, "train_acc": 0.2 * e,
             "val_acc": 0.15 * e if e > 1 else None, "lr": 0.01} for e in range(1, 5)]
    path = tmp_path / "curves.png"
    assert_png(plot_training_curves(rows, path), path)
    plain = [{"epoch": 1, "loss": 1.0, "acc": 0.3, "val_loss": 1.1, "val_acc": 0.25}]
    assert_png(plot_training_curves(plain, tmp_path / "p.png"), tmp_path / "p.png")


def test_training_curves_bad_input(tmp_path):
    with pytest.raises(ValueError, match="rows is empty"):
        plot_training_curves([], tmp_path / "t.png")
    with pytest.raises(ValueError, match="record 1 has no 'epoch'"):
        plot_training_curves([{"epoch": 1, "loss": 1.0}, {"loss": 0.5}], tmp_path / "t.png")
    with pytest.raises(ValueError, match="no '\\*loss\\*' or '\\*acc\\*'"):
        plot_training_curves([{"epoch": 1, "lr": 0.1}], tmp_path / "t.png")
