"""Search spaces: components of DARTS cells joined by hand-overs, the supernet and derived models."""

from nasspeech.space.config import ClassifierConfig, ComponentConfig, HandoverConfig, SearchSpace
from nasspeech.space.handover import get_handover, list_handovers, register_handover

__all__ = [
    "ClassifierConfig",
    "ComponentConfig",
    "HandoverConfig",
    "SearchSpace",
    "get_handover",
    "list_handovers",
    "register_handover",
]
