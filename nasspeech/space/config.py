"""Search-space configuration: the component models and :class:`SearchSpace` (each in its
own module now); this module keeps the names importable from here."""

from nasspeech.space.component_config import (
    ClassifierConfig,
    ComponentConfig,
    HandoverConfig,
    SpaceSpec,
)
from nasspeech.space.loading import ConfigFileError, load_mapping
from nasspeech.space.search_space import SearchSpace

__all__ = ["ClassifierConfig", "ComponentConfig", "ConfigFileError", "HandoverConfig",
           "SearchSpace", "SpaceSpec", "load_mapping"]
