"""The component chain shared by the supernet and derived models: components joined by
hand-overs, then the classifier head."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasspeech.registry import get_family
from nasspeech.space.component_config import ClassifierConfig, ComponentConfig, SpaceSpec
from nasspeech.space.handover import default_handover, get_handover

__all__ = ["ComponentBuilder", "ComponentChain", "classifier_head"]

ComponentBuilder = Callable[[ComponentConfig, tuple[int, ...]], nn.Module]


def _handover(name: str, options: dict, in_shape: tuple[int, ...], target: str,
              where: str, source: str | None = None) -> tuple[nn.Module, tuple[int, ...]]:
    if name == "auto":
        name = default_handover(len(in_shape), target, source)
    try:
        return get_handover(name).build(in_shape, **options)
    except Exception as exc:
        raise ValueError(f"{where}: hand-over {name!r} failed on shape {in_shape}: {exc}") from exc


def classifier_head(cfg: ClassifierConfig, in_features: int, num_classes: int) -> nn.Module:
    layers: list[nn.Module] = []
    width = in_features
    for hidden in cfg.hidden:
        layers += [nn.Linear(width, hidden), nn.ReLU()]
        if cfg.dropout:
            layers.append(nn.Dropout(cfg.dropout))
        width = hidden
    if cfg.dropout and not cfg.hidden:
        layers.append(nn.Dropout(cfg.dropout))
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


class ComponentChain(nn.Module):
    """input -> [input hand-over] -> component_1 -> hand-over -> ... -> head."""

    def __init__(self, space: SpaceSpec, build_component: ComponentBuilder) -> None:
        super().__init__()
        self.space = space
        shape = tuple(space.input_shape)
        first = space.components[0]
        self.input_handover, shape = _handover(
            "auto", {}, shape, first.family, "input of the space"
        )
        self.components = nn.ModuleDict()
        self.handovers = nn.ModuleDict()
        for i, cfg in enumerate(space.components):
            get_family(cfg.family)
            comp = build_component(cfg, shape)
            self.components[cfg.name] = comp
            target = space.components[i + 1].family if i + 1 < len(space.components) else "head"
            self.handovers[cfg.name], shape = _handover(
                cfg.handover.name, cfg.handover.options, comp.out_shape, target,
                f"component {cfg.name!r}", cfg.family,
            )
        if len(shape) != 1:
            raise ValueError(
                f"the last hand-over must give a flat feature vector for the head, got {shape}"
            )
        self.feature_shape = shape
        self.classifier = classifier_head(space.classifier, shape[0], space.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if tuple(x.shape[1:]) != tuple(self.space.input_shape):
            raise ValueError(
                f"input of shape {tuple(x.shape)} does not match the space's input_shape "
                f"{tuple(self.space.input_shape)} (plus a batch axis)"
            )
        x = self.input_handover(x)
        for name, comp in self.components.items():
            x = self.handovers[name](comp(x))
        return self.classifier(x)
