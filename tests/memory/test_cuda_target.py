"""The CUDA-target trace swaps CPU-only kernels for what CUDA runs."""

from __future__ import annotations

from helpers import fake_trace, lstm_space

from nasspeech.memory import overheads


def test_lstms_run_as_cudnn_with_a_reserve_space() -> None:
    space = lstm_space(ops=("memtest_lstm_2", "memtest_skip"))
    cuda = fake_trace(space, 3, 1, target="cuda")
    cpu = fake_trace(space, 3, 1, target="cpu")
    assert not any(a.aten.startswith("mkldnn") for a in cuda.allocs)
    assert any(a.aten.startswith("mkldnn_rnn_layer") for a in cpu.allocs)
    # 2 layers x T=8 steps x batch 3 x hidden 8, float32: (6 x 2 - 1) x 8 x 3 x 8 x 4 + 256
    reserve = overheads.cudnn_rnn_reserve_bytes("lstm", 8, 3, 8, layers=2)
    assert reserve == 11 * 8 * 3 * 8 * 4 + 256
    lstm_allocs = [a for a in cuda.allocs if a.op == "memtest_lstm_2"]
    assert any(a.nbytes == reserve and a.category == "saved_activations" for a in lstm_allocs)


def test_optimisers_use_foreach_kernels_on_cuda() -> None:
    space = lstm_space(ops=("memtest_lstm_1", "memtest_skip"))
    cuda = fake_trace(space, 2, 1, target="cuda")
    assert any(op.startswith("aten::_foreach") for op in cuda.meta["aten_ops"])
