"""Baselines (paper Section 4.2): shapes at any batch/input size, per-sample processing over
the time axis (reference pitfall 2), softmax over classes, the CNN's 35K parameters, registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nasspeech.baselines import (
    CNNLSTMBaseline,
    UnknownBaselineError,
    build_baseline,
    list_baselines,
    register_baseline,
    unregister_baseline,
)
from nasspeech.metrics import count_parameters

NAMES = ("cnn", "cnn_lstm", "cnn_lstm_att")
SHAPES = ((1, 128, 128), (1, 32, 64))


def test_builtins_are_listed():
    assert list_baselines()[:3] == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", SHAPES)
def test_output_shape_any_batch(name, shape):
    model = build_baseline(name, shape, num_classes=4).eval()
    with torch.no_grad():
        for batch in (1, 2, 5):
            out = model(torch.randn(batch, *shape))
            assert out.shape == (batch, 4)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", NAMES)
def test_other_input_sizes_and_classes(name):
    for shape in ((1, 1, 1), (2, 7, 3), (1, 40, 301)):
        model = build_baseline(name, shape, num_classes=3).eval()
        assert model(torch.randn(2, *shape)).shape == (2, 3)


@pytest.mark.parametrize("name", NAMES)
def test_batch_independence(name):
    """Eval mode: a permuted batch gives permuted outputs, changing sample j leaves every other
    output unchanged, and each row equals the sample run alone (batch size 1)."""
    shape = (1, 32, 64)
    model = build_baseline(name, shape, num_classes=4).eval()
    x = torch.randn(5, *shape)
    with torch.no_grad():
        out = model(x)
        perm = torch.tensor([3, 0, 4, 1, 2])
        torch.testing.assert_close(model(x[perm]), out[perm], rtol=1e-5, atol=1e-6)
        changed = x.clone()
        changed[2] = torch.randn(shape) * 3
        out2 = model(changed)
        keep = [0, 1, 3, 4]
        torch.testing.assert_close(out2[keep], out[keep], rtol=1e-5, atol=1e-6)
        assert not torch.allclose(out2[2], out[2])
        alone = torch.cat([model(x[i : i + 1]) for i in range(5)])
        torch.testing.assert_close(alone, out, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_softmax_over_classes_not_batch(name):
    """The logits' softmax over the class axis (what CrossEntropyLoss and prediction use)
    gives each sample the same probabilities whatever else is in the batch; a softmax over the
    batch (the reference bug) would give a lone sample probability 1 for every class."""
    shape = (1, 32, 64)
    model = build_baseline(name, shape, num_classes=4).eval()
    x = torch.randn(6, *shape)
    with torch.no_grad():
        probs = torch.softmax(model(x), dim=1)
        for i in range(6):
            alone = torch.softmax(model(x[i : i + 1]), dim=1)
            torch.testing.assert_close(alone[0], probs[i], rtol=1e-5, atol=1e-6)
        pairs = torch.softmax(model(x[[5, 1]]), dim=1)
    torch.testing.assert_close(pairs, probs[[5, 1]], rtol=1e-5, atol=1e-6)
    assert probs.argmax(dim=1).tolist() == [int(p.argmax()) for p in probs]
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(6))


def test_lstm_runs_over_time_axis():
    """1x32x64 -> conv 18x34 -> pool 9x17: a sequence of T'=17 steps of C*F'=9 features."""
    model = build_baseline("cnn_lstm", (1, 32, 64), num_classes=4)
    seq = model.sequence(torch.randn(3, 1, 32, 64))
    assert seq.shape == (3, 17, 9)
    assert model.lstm.input_size == 9 and model.lstm.bidirectional
    assert model.lstm.hidden_size == 128 and model.lstm.batch_first


def test_attention_is_softmax_over_time_per_sample():
    model = build_baseline("cnn_lstm_att", (1, 32, 64), num_classes=4).eval()
    x = torch.randn(4, 1, 32, 64)
    with torch.no_grad():
        h = model.lstm(model.sequence(x))[0]
        w = model.attention.weights(h)
        assert w.shape == (4, 17)
        torch.testing.assert_close(w.sum(dim=1), torch.ones(4))
        torch.testing.assert_close(model.attention.weights(h[1:2])[0], w[1])
        assert not torch.allclose(w[0], torch.full((17,), 1 / 17))  # learnable scores, not mean


def test_cnn_has_the_papers_35k_parameters():
    """conv 2*2+1 = 5; 128 -> 66 -> 33, 33*33 = 1089 features; 1089*32+32; 32*4+4."""
    model = build_baseline("cnn", (1, 128, 128), num_classes=4)
    assert count_parameters(model) == 5 + 1089 * 32 + 32 + 32 * 4 + 4 == 35_017
    assert round(count_parameters(model) / 1000) == 35


def test_cnn_layers_match_the_paper():
    model = build_baseline("cnn", (1, 128, 128), num_classes=4)
    conv = model.features.conv
    assert (conv.kernel_size, conv.stride, conv.padding) == ((2, 2), (2, 2), (2, 2))
    assert conv.out_channels == 1
    dropouts = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert [d.p for d in dropouts] == [0.3]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(1089, 32), (32, 4)]
    assert not any(isinstance(m, nn.Softmax) for m in model.modules())


@pytest.mark.parametrize("name", NAMES)
def test_trains_one_step(name):
    model = build_baseline(name, (1, 16, 24), num_classes=4)
    x, y = torch.randn(3, 1, 16, 24), torch.tensor([0, 3, 1])
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_time_pooling_last_and_options():
    model = build_baseline("cnn_lstm", (1, 32, 64), 4, time_pooling="last", lstm_units=16,
                           hidden=8, conv_channels=2).eval()
    assert model(torch.randn(2, 1, 32, 64)).shape == (2, 4)
    assert model.lstm.input_size == 2 * 9 and model.lstm.hidden_size == 16


def test_bad_input_gives_clear_errors():
    with pytest.raises(UnknownBaselineError, match="cnn_gru.*known"):
        build_baseline("cnn_gru", (1, 128, 128), 4)
    with pytest.raises(TypeError, match="'cnn' has no option.*kernel"):
        build_baseline("cnn", (1, 128, 128), 4, kernel=3)
    with pytest.raises(ValueError, match="input_shape"):
        build_baseline("cnn", (128, 128), 4)
    with pytest.raises(ValueError, match="num_classes"):
        build_baseline("cnn", (1, 128, 128), 1)
    with pytest.raises(ValueError, match="time_pooling"):
        build_baseline("cnn_lstm", (1, 8, 8), 4, time_pooling="max")
    model = build_baseline("cnn", (1, 32, 64), 4)
    with pytest.raises(ValueError, match=r"expected input \(B, 1, 32, 64\), got \(2, 1, 64, 32\)"):
        model(torch.randn(2, 1, 64, 32))


def test_register_own_baseline():
    @register_baseline("tiny_test_mlp")
    def tiny(input_shape, num_classes, width: int = 5):
        c, f, t = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * f * t, width), nn.ReLU(),
                             nn.Linear(width, num_classes))

    try:
        assert "tiny_test_mlp" in list_baselines()
        model = build_baseline("tiny_test_mlp", (1, 4, 4), 3, width=7)
        assert model(torch.randn(2, 1, 4, 4)).shape == (2, 3)
        with pytest.raises(ValueError, match="already registered"):
            register_baseline("tiny_test_mlp")(tiny)
        register_baseline("tiny_test_mlp", replace=True)(CNNLSTMBaseline)
        assert isinstance(build_baseline("tiny_test_mlp", (1, 8, 8), 3), CNNLSTMBaseline)
    finally:
        unregister_baseline("tiny_test_mlp")
    assert "tiny_test_mlp" not in list_baselines()
