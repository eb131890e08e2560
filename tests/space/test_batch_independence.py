"""No batch leakage: supernet and derived emoDARTS models are permutation-equivariant over the
batch in eval mode, and one sample's output never depends on another sample."""

from pathlib import Path

import pytest
import torch

from nasspeech.space import SearchSpace

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emodarts_small() -> SearchSpace:
    """The shipped emoDARTS space (all Table-2 ops, CNN -> seq), shrunk to test size."""
    space = SearchSpace.from_file(ROOT / "examples/emodarts.yaml")
    space = space.with_changes(cnn={"channels": 4}, seq={"channels": 8})
    return space.model_copy(update={"input_shape": (1, 16, 12)})


def _models(space):
    torch.manual_seed(0)
    supernet = space.build_supernet()
    with torch.no_grad():
        for a in supernet.alpha_parameters():
            a.normal_(0, 1)  # a non-trivial genotype
    derived = space.derive(supernet.genotype(), drop_path=0.2)
    return {"supernet": supernet.eval(), "derived": derived.eval()}


@pytest.mark.parametrize("batch", [1, 2, 5])
def test_permutation_equivariance(emodarts_small, batch):
    x = torch.randn(batch, *emodarts_small.input_shape)
    perm = torch.randperm(batch) if batch > 1 else torch.tensor([0])
    for name, model in _models(emodarts_small).items():
        with torch.no_grad():
            out = model(x)
            out_perm = model(x[perm])
        assert out.shape == (batch, 4), name
        torch.testing.assert_close(out_perm, out[perm], rtol=1e-4, atol=1e-5, msg=name)


def test_one_sample_does_not_see_the_others(emodarts_small):
    x = torch.randn(5, *emodarts_small.input_shape)
    for name, model in _models(emodarts_small).items():
        with torch.no_grad():
            ref = model(x)
            changed = x.clone()
            changed[1:] = torch.randn_like(changed[1:]) * 3
            out = model(changed)
            alone = model(x[:1])
        torch.testing.assert_close(out[0], ref[0], rtol=1e-4, atol=1e-5, msg=name)
        torch.testing.assert_close(alone[0], ref[0], rtol=1e-4, atol=1e-5, msg=name)


def test_cnn_to_seq_handover_keeps_time_axis(emodarts_small):
    net = _models(emodarts_small)["supernet"]
    cnn_out = net.components["cnn"].out_shape  # (C, F', T')
    seq_in = net.components["seq"].in_shape  # (T', C*F')
    assert seq_in == (cnn_out[2], cnn_out[0] * cnn_out[1])
