"""Search-space description: a pydantic model, loadable from YAML/JSON and buildable in Python."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from nasspeech.genotype import Genotype
from nasspeech.space import limits
from nasspeech.space.component_config import _MODEL, ClassifierConfig, ComponentConfig, _int
from nasspeech.space.derived import DerivedModel
from nasspeech.space.limits import short
from nasspeech.space.loading import load_mapping
from nasspeech.space.size import check_size, supernet_size
from nasspeech.space.supernet import Supernet

__all__ = ["SearchSpace"]


class SearchSpace(BaseModel):
    """A composed search space: input shape, classes, ordered components and the head."""

    model_config = _MODEL

    name: str = Field(default="space", min_length=1, max_length=limits.MAX_NAME_LENGTH)
    input_shape: tuple[Annotated[int, Field(strict=True, ge=1, le=limits.MAX_INPUT_SIZE)], ...] = (
        Field(description="one sample, no batch axis, e.g. [1, 128, 128]", min_length=1,
              max_length=3))
    num_classes: int = _int(2, limits.MAX_CLASSES)
    components: list[ComponentConfig] = Field(min_length=1, max_length=16)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)

    @model_validator(mode="after")
    def _unique_names(self) -> SearchSpace:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique, got {short(names)}")
        values = 1
        for n in self.input_shape:
            values *= n
        if values > limits.MAX_INPUT_VALUES:
            raise ValueError(f"input_shape {self.input_shape} has {values:,} values per sample "
                             f"(the limit is {limits.MAX_INPUT_VALUES:,})")
        try:
            size = supernet_size(self.components, self.input_shape, self.classifier.hidden,
                                 self.num_classes)
        except Exception:  # noqa: BLE001  (a space that cannot be sized fails when it is built)
            return self
        check_size(size, self.components, f"the supernet of space {self.name!r}")
        return self

    # -- loading -----------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path) -> SearchSpace:
        """Load a space from YAML or JSON; a run config's ``space:`` section is accepted too."""
        data = load_mapping(path)
        if "space" in data and "components" not in data:
            data = data["space"]
        return cls.model_validate(data)

    def component(self, name: str) -> ComponentConfig:
        for comp in self.components:
            if comp.name == name:
                return comp
        raise KeyError(f"no component {name!r}; components: {[c.name for c in self.components]}")

    def with_changes(self, **component_changes: dict[str, Any]) -> SearchSpace:
        """A copy with some component fields changed, e.g. ``with_changes(cnn={"cells": 8})``."""
        data = self.model_dump()
        for comp in data["components"]:
            comp.update(component_changes.pop(comp["name"], {}))
        if component_changes:
            raise KeyError(f"no components named {sorted(component_changes)}")
        return type(self).model_validate(data)

    # -- building ----------------------------------------------------------------------
    def build_supernet(self) -> Supernet:
        """The supernet of this space (every candidate op on every edge)."""
        return Supernet(self)

    def derive(
        self,
        genotype: Genotype,
        overrides: dict[str, dict[str, int]] | None = None,
        drop_path: float = 0.0,
        auxiliary: bool = False,
    ) -> DerivedModel:
        """The discrete model of ``genotype`` (per-component ``channels``/``cells`` overrides;
        ``auxiliary``: DARTS's auxiliary head, see :class:`~nasspeech.space.derived.DerivedModel`)."""
        return DerivedModel(self, genotype, overrides=overrides, drop_path=drop_path,
                            auxiliary=auxiliary)
