"""The :class:`Operation` record: one registered candidate op and its metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

#: Op families known to the toolkit and the tensor layout their ops map.
FAMILY_LAYOUTS: dict[str, str] = {
    "cnn": "(B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s))",
    "seq": "(B, T, C) -> (B, T, C)",
}

OpFactory = Callable[..., nn.Module]


@dataclass(frozen=True)
class Operation:
    """A candidate operation of one family.

    ``factory(channels, stride=1)`` builds a fresh module. ``parametric`` is False for
    parameter-free ops (pooling, ``skip_connect``, ``none``): the collapse guard counts those.
    ``is_zero`` marks the ``none`` op, which a mixed op may skip instead of computing.
    ``source`` is ``"built-in"``, the plugin's distribution name, or ``"user:<module>"``.
    """

    family: str
    name: str
    factory: OpFactory
    description: str = ""
    parametric: bool = True
    is_zero: bool = False
    source: str = "built-in"
    tags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def build(self, channels: int, stride: int = 1) -> nn.Module:
        """A fresh module of this op for ``channels`` channels (cnn ops also take a stride)."""
        if channels < 1:
            raise ValueError(f"op {self.key}: channels must be >= 1, got {channels}")
        if stride not in (1, 2):
            raise ValueError(f"op {self.key}: stride must be 1 or 2, got {stride}")
        if self.family != "cnn" and stride != 1:
            raise ValueError(f"op {self.key}: family {self.family!r} ops take no stride")
        module = self.factory(channels, stride)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"op {self.key} (source {self.source}): factory returned "
                f"{type(module).__name__}, expected torch.nn.Module"
            )
        return module

    def as_dict(self) -> dict[str, object]:
        return {
            "family": self.family,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "parametric": self.parametric,
            "tags": list(self.tags),
        }
