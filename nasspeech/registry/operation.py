"""The :class:`Operation` record: one registered candidate op, its traits and metadata."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn

from nasspeech.registry.base import DuplicateNameError, UnknownNameError
from nasspeech.registry.family import FAMILIES

OpFactory = Callable[..., nn.Module]


class UnknownOpError(UnknownNameError):
    """An op name that is not registered in a family."""


class DuplicateOpError(DuplicateNameError):
    """The same family/name registered twice without ``override=True``."""


@dataclass(frozen=True)
class Operation:
    """A candidate operation of one family.

    ``factory(channels, stride=1)`` builds a fresh module. The op declares its traits, so
    nothing recognises an op by its name:

    - ``parametric``: False for parameter-free ops (pooling, ``skip_connect``, ``none``);
      the collapse guard counts those;
    - ``is_zero``: the ``none`` op (no connection), which a mixed op skips instead of
      computing and a genotype never keeps;
    - ``identity``: the op passes its input on unchanged at stride 1 (``skip_connect``):
      drop-path leaves such edges alone (:meth:`can_drop_path`), collapse guards count them.

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
    identity: bool = False

    @property
    def key(self) -> str:
        return f"{self.family}/{self.name}"

    def can_drop_path(self, stride: int = 1) -> bool:
        """Whether drop-path may zero this op's output (not an identity edge, as in DARTS)."""
        return not (self.identity and stride == 1)

    def build(self, channels: int, stride: int = 1) -> nn.Module:
        """A fresh module of this op for ``channels`` channels (at a stride its family takes)."""
        if channels < 1:
            raise ValueError(f"op {self.key}: channels must be >= 1, got {channels}")
        if stride not in (1, 2):
            raise ValueError(f"op {self.key}: stride must be 1 or 2, got {stride}")
        strides = FAMILIES.get(self.family).strides if self.family in FAMILIES else (1,)
        if stride not in strides:
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
