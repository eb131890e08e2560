"""The search step to trace: supernet, Architect, weight optimiser and batches, built the
same way on real CPU tensors (for checks) or on fake tensors (for estimates)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasspeech.config import SearchConfig
from nasspeech.search.architect import Architect
from nasspeech.search.loop import StepResult
from nasspeech.search.recipe import SearchRecipe, build_search
from nasspeech.space.config import SearchSpace
from nasspeech.space.supernet import Supernet


@dataclass
class StepSetup:
    """A search recipe (:func:`nasspeech.search.recipe.build_search`) and two batches."""

    recipe: SearchRecipe
    train_batch: tuple[torch.Tensor, torch.Tensor]
    val_batch: tuple[torch.Tensor, torch.Tensor]
    persistent: dict[str, list[torch.Tensor]] = field(default_factory=dict)

    @property
    def model(self) -> Supernet:
        return self.recipe.model

    @property
    def architect(self) -> Architect:
        return self.recipe.architect

    @property
    def w_optimizer(self) -> torch.optim.Optimizer:
        return self.recipe.w_optimizer

    @property
    def search(self) -> SearchConfig:
        return self.recipe.config

    def run(self) -> StepResult:
        """One search step of the toolkit (alpha step, then weight step)."""
        return self.recipe.step(self.train_batch, self.val_batch)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return self.recipe.optimizers()


def make_setup(
    model: Supernet,
    space: SearchSpace,
    batch_size: int,
    search: SearchConfig,
    foreach: bool | None = None,
) -> StepSetup:
    """The search recipe and two batches around ``model``; call inside a fake mode for fakes.

    ``foreach`` sets the optimisers' ``foreach`` flag (``True`` is PyTorch's default for CUDA
    parameters, ``None`` lets PyTorch decide from the tensors' device).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    recipe = build_search(search, model, foreach=foreach)
    train, val = make_batches(space, batch_size)
    return StepSetup(recipe, train, val)


def make_batches(space: SearchSpace, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """A training and a validation batch of random inputs and labels."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    shape = (batch_size, *space.input_shape)
    return [
        (torch.randn(shape), torch.randint(0, space.num_classes, (batch_size,)))
        for _ in range(2)
    ]


def fakeify(model: nn.Module, fake_mode: Any) -> nn.Module:
    """Replace every parameter and buffer of a meta-device ``model`` by a fake CPU tensor."""
    converter = fake_mode.fake_tensor_converter
    memo: dict[int, torch.Tensor] = {}
    cpu = torch.device("cpu")

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in memo:
            memo[id(t)] = converter.from_meta_and_device(fake_mode, t.detach(), cpu)
        return memo[id(t)]

    keep = []  # keep originals alive so ids stay unique while converting
    for module in model.modules():
        for name, p in module._parameters.items():
            if p is not None:
                keep.append(p)
                module._parameters[name] = nn.Parameter(fake(p), requires_grad=p.requires_grad)
        for name, b in module._buffers.items():
            if b is not None:
                keep.append(b)
                module._buffers[name] = fake(b)
        if isinstance(module, nn.RNNBase):
            module._init_flat_weights()
    return model


def build_fake_supernet(space: SearchSpace, fake_mode: Any) -> Supernet:
    """The supernet of ``space`` with fake parameters: nothing is allocated."""
    with torch.device("meta"):
        model = space.build_supernet()
    return fakeify(model, fake_mode)


def prime_state(setup: StepSetup) -> dict[str, Any]:
    """Put ``setup`` into the state a previous search step leaves, without running one:
    SGD momentum buffers, Adam step/moments, and a gradient on every parameter (the weight
    step leaves the weights' gradients, the alpha step the alphas'). Call inside the fake
    mode. Returns what was created, for :func:`state_matches` after the traced step."""
    params = list(setup.model.parameters())
    # meta tensors hold no values: empty_like (C++) instead of zeros_like (a Python kernel)
    like = torch.empty_like if params and params[0].is_meta else torch.zeros_like
    for p in params:
        p.grad = like(p)
    if setup.search.momentum:
        for group in setup.w_optimizer.param_groups:  # the order SGD creates them in
            for p in group["params"]:
                setup.w_optimizer.state[p]["momentum_buffer"] = like(p)
    for p in setup.architect.alphas:
        setup.architect.optimizer.state[p] = {
            "step": torch.tensor(0.0),
            "exp_avg": like(p),
            "exp_avg_sq": like(p),
        }
    return {"grads": {id(p) for p in params}, "state": _state_layout(setup)}


def state_matches(setup: StepSetup, primed: dict[str, Any]) -> bool:
    """Whether the step left exactly the state :func:`prime_state` assumed."""
    grads = {id(p) for p in setup.model.parameters() if p.grad is not None}
    return grads == primed["grads"] and _state_layout(setup) == primed["state"]


def _state_layout(setup: StepSetup) -> list:
    return [
        sorted((id(p), k, tuple(v.shape)) for p, st in opt.state.items() for k, v in st.items()
               if isinstance(v, torch.Tensor))
        for opt in setup.optimizers()
    ]
