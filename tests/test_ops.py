"""Every built-in op: shape contract, finite gradients, and batch independence (no sample
influences another), at batch sizes 1, 2, 3, 17 and widths 4 and 16."""

from __future__ import annotations

import pytest
import torch

from nasspeech.ops.seq import attention_heads
from nasspeech.registry import Operation, expected_shape, list_ops

BATCHES = (1, 2, 3, 17)
WIDTHS = (4, 16)
SPATIAL = (8, 8)  # cnn (H, W)
STEPS = 5  # seq T

TABLE_2 = {
    "cnn": {"max_pool_3x3", "avg_pool_3x3", "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3",
            "dil_conv_5x5", "conv_7x1_1x7", "skip_connect", "none"},
    "seq": {"lstm_1", "lstm_2", "lstm_3", "lstm_4", "rnn_1", "rnn_2", "rnn_3", "rnn_4",
            "lstm_att_1", "lstm_att_2", "rnn_att_1", "rnn_att_2", "skip_connect", "none"},
}


def builtin(family: str) -> list[Operation]:
    return [op for op in list_ops(family) if op.source == "built-in"]


def input_shape(family: str, batch: int, width: int, size: tuple[int, int] = SPATIAL):
    return (batch, width, *size) if family == "cnn" else (batch, STEPS, width)


def assert_op_contract(op: Operation, width: int, stride: int = 1) -> None:
    """Shapes and finite gradients at every batch size (train mode), then batch independence
    in eval mode: a permuted batch gives the permuted output, and a sample's output does not
    change when the rest of the batch is dropped or replaced."""
    torch.manual_seed(0)
    module = op.build(width, stride)
    params = [p for p in module.parameters() if p.requires_grad]
    if stride == 1:  # skip_connect is a factorized reduce at stride 2, yet counts as free
        assert bool(params) == op.parametric, f"{op.key}: parametric={op.parametric}"
    module.train()
    for batch in BATCHES:
        x = torch.randn(*input_shape(op.family, batch, width), requires_grad=True)
        out = module(x)
        assert isinstance(out, torch.Tensor), f"{op.key} returned {type(out).__name__}"
        assert tuple(out.shape) == expected_shape(op.family, tuple(x.shape), stride), op.key
        module.zero_grad()
        (out * torch.randn_like(out)).sum().backward()  # random weights: BN-sum grads are 0
        assert torch.isfinite(x.grad).all(), f"{op.key}: non-finite input gradient"
        assert op.is_zero or x.grad.abs().sum() > 0, f"{op.key}: no gradient reaches the input"
        for name, p in module.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), f"{op.key}.{name}"

    module.eval()
    x = torch.randn(*input_shape(op.family, max(BATCHES), width))
    perm = torch.randperm(x.shape[0])
    with torch.no_grad():
        out = module(x)
        torch.testing.assert_close(module(x[perm]), out[perm], rtol=1e-4, atol=1e-5)
        for batch in BATCHES[:-1]:  # sub-batches: same outputs for the same samples
            torch.testing.assert_close(module(x[:batch]), out[:batch], rtol=1e-4, atol=1e-5)
        changed = x.clone()
        changed[1:] = torch.randn_like(changed[1:]) * 3
        torch.testing.assert_close(module(changed)[0], out[0], rtol=1e-4, atol=1e-5)


def test_all_table_2_ops_are_built_in():
    for family, names in TABLE_2.items():
        assert {op.name for op in builtin(family)} == names


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("op", builtin("cnn"), ids=lambda op: op.name)
def test_cnn_op_contract(op, width, stride):
    assert_op_contract(op, width, stride)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("op", builtin("seq"), ids=lambda op: op.name)
def test_seq_op_contract(op, width):
    assert_op_contract(op, width)


@pytest.mark.parametrize("op", builtin("cnn"), ids=lambda op: op.name)
def test_cnn_odd_sizes(op):
    for stride in (1, 2):
        module = op.build(4, stride).eval()
        for size in ((7, 5), (1, 1), (2, 3)):
            with torch.no_grad():
                out = module(torch.randn(2, 4, *size))
            assert tuple(out.shape) == expected_shape("cnn", (2, 4, *size), stride), size


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("size", [(32, 32), (31, 17), (8, 8)])
def test_conv_7x1_1x7_preserves_or_halves_size(size, stride):
    """The reference code turned 32x32 into 38x38 at stride 1."""
    op = next(op for op in builtin("cnn") if op.name == "conv_7x1_1x7")
    out = op.build(3, stride)(torch.randn(1, 3, *size))
    want = tuple(-(-s // stride) for s in size)
    assert tuple(out.shape[2:]) == want


@pytest.mark.parametrize("op", builtin("seq"), ids=lambda op: op.name)
def test_seq_ops_any_width_and_length(op):
    with torch.no_grad():
        for width in (1, 3, 32):  # 32: a 2-head attention
            for steps in (1, 7):
                out = op.build(width).eval()(torch.randn(2, steps, width))
                assert tuple(out.shape) == (2, steps, width), (width, steps)


@pytest.mark.parametrize("op", builtin("seq"), ids=lambda op: op.name)
def test_seq_ops_take_no_stride(op):
    with pytest.raises(ValueError, match=f"{op.key}.*no stride"):
        op.build(4, 2)


@pytest.mark.parametrize("name", ["lstm_1", "rnn_2", "lstm_att_1", "rnn_att_2"])
def test_plain_ops_are_causal_attention_ops_see_the_whole_sequence(name):
    """lstm_k/rnn_k are unidirectional: step 0 ignores later steps. The _att ops (bidirectional
    recurrence + self-attention over time) let step 0 depend on the whole sequence."""
    op = next(op for op in builtin("seq") if op.name == name)
    module = op.build(8).eval()
    x = torch.randn(1, 6, 8)
    later = x.clone()
    later[:, 1:] += 1.0
    with torch.no_grad():
        same = torch.allclose(module(x)[:, 0], module(later)[:, 0], atol=1e-6)
    assert same == ("_att" not in name)


def test_attention_heads_divide_the_width():
    assert [attention_heads(c) for c in (1, 4, 16, 32, 48, 64, 128, 130)] == [
        1, 1, 1, 2, 2, 4, 8, 2,
    ]
    for c in range(1, 200):
        assert c % attention_heads(c) == 0


def test_builtin_ops_build_on_meta_device():
    """The memory estimator builds the supernet on the meta device: nothing is allocated."""
    with torch.device("meta"):
        for op in builtin("cnn") + builtin("seq"):
            for p in op.build(8).parameters():
                assert p.is_meta, op.key
