"""Plug-in registries: candidate ops by family, op families, (and, through the generic
:class:`Registry`, hand-overs and baselines). A leaf: it imports nothing else of nasspeech;
the built-ins register themselves from their own packages through this public API."""

from nasspeech.registry.base import (
    BUILTIN_SOURCE,
    DuplicateNameError,
    Registry,
    UnknownNameError,
    did_you_mean,
    source_of,
)
from nasspeech.registry.context import registering_as
from nasspeech.registry.family import (
    FAMILIES,
    FAMILY_LAYOUTS,
    CellSlot,
    Family,
    UnknownFamilyError,
    get_family,
    list_families,
    register_family,
)
from nasspeech.registry.notices import NasspeechWarning, warn_once
from nasspeech.registry.operation import DuplicateOpError, Operation, UnknownOpError
from nasspeech.registry.plugins import ENTRY_POINT_GROUP, PluginWarning, set_plugin_autoload
from nasspeech.registry.registry import REGISTRY, OpRegistry, get_op, list_ops, register_op
from nasspeech.registry.validation import OpContractError, check_op, expected_shape

__all__ = [
    "BUILTIN_SOURCE",
    "ENTRY_POINT_GROUP",
    "FAMILIES",
    "FAMILY_LAYOUTS",
    "REGISTRY",
    "CellSlot",
    "DuplicateNameError",
    "DuplicateOpError",
    "Family",
    "NasspeechWarning",
    "OpContractError",
    "OpRegistry",
    "Operation",
    "PluginWarning",
    "Registry",
    "UnknownFamilyError",
    "UnknownNameError",
    "UnknownOpError",
    "check_op",
    "did_you_mean",
    "expected_shape",
    "get_family",
    "get_op",
    "list_families",
    "list_ops",
    "register_family",
    "register_op",
    "registering_as",
    "set_plugin_autoload",
    "source_of",
    "warn_once",
]
