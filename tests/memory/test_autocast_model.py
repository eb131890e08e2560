"""The estimator's model of autocast (bf16 traces on meta tensors, which torch's autocast
does not touch): the same casts as torch's own autocast, and CUDA's failure with fp16 RNNs."""

from __future__ import annotations

import contextlib

import pytest
import torch
from helpers import canonical, cnn_space
from test_meta_trace import attention_space, conv_space

from nasspeech.config import SearchConfig
from nasspeech.kernels import reference_kernels
from nasspeech.kernels.precision import autocast, modelled_autocast
from nasspeech.memory.autocast_model import CPU_POLICY, AutocastModel
from nasspeech.memory.session import StepTracerSession
from nasspeech.memory.setup import make_setup
from nasspeech.memory.trace import trace_step


def _real_trace(space, order: int, model: AutocastModel | None):
    """A bf16 step on real CPU tensors, under torch's CPU autocast or under ``model``."""
    torch.manual_seed(0)
    setup = make_setup(space.build_supernet(), space, 3, SearchConfig(order=order,
                                                                      precision="bf16"))
    amp = modelled_autocast(model) if model is not None else contextlib.nullcontext()
    with reference_kernels(), amp:
        return trace_step(setup, target="cpu")


@pytest.mark.parametrize(("make", "order"), [(conv_space, 2), (attention_space, 1)],
                         ids=["conv-order2", "attention-order1"])
def test_the_model_casts_what_torch_autocast_casts(make, order) -> None:
    """With the CPU policy table, the model's trace of a real CPU step is torch's own CPU
    autocast's, allocation for allocation (sizes, ops, order)."""
    real = _real_trace(make(), order, None)
    modelled = _real_trace(make(), order, AutocastModel(CPU_POLICY))
    assert [(a.nbytes, a.aten) for a in modelled.allocs] == \
        [(a.nbytes, a.aten) for a in real.allocs]
    assert canonical(modelled.events) == canonical(real.events)
    assert any(a.aten.startswith("_to_copy") for a in real.allocs)  # it did cast


def test_meta_and_fake_bf16_traces_agree() -> None:
    """The fast (meta) tracer and the fake tracer give the same bf16 step: the same events,
    the same sizes except the per-channel batch-norm statistics, which FakeTensor makes bf16
    where the real kernels (and the meta ones) keep them fp32."""
    from test_meta_trace import _records
    from torch._subclasses.fake_tensor import FakeTensorMode

    from nasspeech.memory.setup import build_fake_supernet

    space, search = attention_space(), SearchConfig(order=2, precision="bf16")
    meta = StepTracerSession(space, search).trace(3)
    fake_mode = FakeTensorMode()
    model = build_fake_supernet(space, fake_mode)
    with fake_mode:
        setup = make_setup(model, space, 3, search, foreach=True)
    fake = trace_step(setup, fake_mode, target="cuda")
    assert meta.events == fake.events
    differ = [(m, f) for m, f in zip(_records(meta), _records(fake), strict=True) if m != f]
    assert differ
    stats = {"native_batch_norm", "zeros_like", "ones_like"}  # the statistics, and their like
    assert all(m[4].split(".")[0] in stats and m[1:] == f[1:] and m[0] == 2 * f[0] <= 64
               for m, f in differ)


def test_bf16_shrinks_the_saved_activations() -> None:
    """bf16 keeps the CNN's activations in half the bytes: the saved activations at the
    peak shrink by more than a third (max pooling's int64 indices do not shrink), weights and
    optimiser state stay fp32."""
    from nasspeech.memory import estimate

    space = cnn_space(channels=8, size=32)
    fp32 = estimate(space, 16, order=1, max_batch=False).breakdown["by_category"]
    bf16 = estimate(space, 16, order=1, max_batch=False,
                    precision="bf16").breakdown["by_category"]
    assert bf16["saved_activations"] < 0.65 * fp32["saved_activations"]
    assert bf16["weights"] == fp32["weights"]
    assert bf16["optimizer_state"] == fp32["optimizer_state"]


def test_cudnn_autocast_runs_rnns_in_fp16() -> None:
    """What failed on CUDA: cuDNN's autocast wrapper runs an RNN in fp16 whatever the
    autocast dtype, and an fp16 tensor among bf16/fp32 ones in a promoting op (the mixed
    op's ``addcmul``) raises. The model does the same; the toolkit's recurrent ops run in
    fp32 inside autocast, so their outputs are fp32."""
    from nasspeech.memory.cudnn_rnn import emulate_cudnn_rnns
    from nasspeech.ops.seq import Recurrent

    with torch.device("meta"):
        op = Recurrent("lstm", 8, 1)
        x = torch.randn(2, 5, 8)
        w = torch.ones((), requires_grad=True)
    with emulate_cudnn_rnns(op), modelled_autocast(AutocastModel()), \
            autocast("meta", "bf16"):
        raw = op.rnn(x)[0]
        assert raw.dtype == torch.float16
        with pytest.raises(RuntimeError, match="prioritize"):
            torch.addcmul(raw, w, x.bfloat16())
        assert op(x).dtype == torch.float32

