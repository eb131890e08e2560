"""Search spaces: components of DARTS cells joined by hand-overs, the supernet and derived models."""

from nasspeech.space.component_chain import ComponentChain
from nasspeech.space.component_config import ClassifierConfig, ComponentConfig, HandoverConfig
from nasspeech.space.derived import DerivedModel
from nasspeech.space.handover import HANDOVERS, get_handover, list_handovers, register_handover
from nasspeech.space.search_space import SearchSpace
from nasspeech.space.supernet import Supernet

__all__ = [
    "HANDOVERS",
    "ClassifierConfig",
    "ComponentChain",
    "ComponentConfig",
    "DerivedModel",
    "HandoverConfig",
    "SearchSpace",
    "Supernet",
    "get_handover",
    "list_handovers",
    "register_handover",
]
