"""Family layouts moved to the registered :class:`~nasspeech.registry.Family` objects
(:mod:`nasspeech.families`); these names keep working."""

from nasspeech.families.cnn import CnnFamily as CnnLayout
from nasspeech.families.seq import SeqFamily as SeqLayout
from nasspeech.registry.family import Family as FamilyLayout
from nasspeech.registry.family import get_family as layout_for

__all__ = ["CnnLayout", "FamilyLayout", "SeqLayout", "layout_for"]
