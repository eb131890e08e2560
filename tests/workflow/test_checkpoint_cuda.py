"""A checkpoint loaded onto a GPU restores the RNG states (they live on the CPU)."""

import pytest
import torch

from nasspeech.workflow.checkpoint import load_checkpoint, save_checkpoint, set_rng_state


@pytest.mark.gpu
def test_rng_state_of_a_checkpoint_loaded_onto_cuda_restores(tmp_path):
    torch.manual_seed(3)
    save_checkpoint(tmp_path / "c.pt", {"epoch": 1})
    expected = torch.rand(3)
    state = load_checkpoint(tmp_path / "c.pt", device="cuda")
    assert state["rng"]["torch"].device.type == "cuda"  # what map_location does
    set_rng_state(state["rng"])
    assert torch.equal(torch.rand(3), expected)
