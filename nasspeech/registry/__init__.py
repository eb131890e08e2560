"""Candidate-op registry: :class:`Operation` records by family, built-ins and plugins alike."""

from nasspeech.registry.notices import NasspeechWarning, warn_once
from nasspeech.registry.operation import FAMILY_LAYOUTS, Operation
from nasspeech.registry.plugins import ENTRY_POINT_GROUP, PluginWarning, set_plugin_autoload
from nasspeech.registry.registry import (
    REGISTRY,
    DuplicateOpError,
    OpRegistry,
    UnknownOpError,
    get_op,
    list_ops,
    register_op,
    registering_as,
)
from nasspeech.registry.validation import OpContractError, check_op, expected_shape

__all__ = [
    "ENTRY_POINT_GROUP",
    "FAMILY_LAYOUTS",
    "REGISTRY",
    "DuplicateOpError",
    "NasspeechWarning",
    "OpContractError",
    "OpRegistry",
    "Operation",
    "PluginWarning",
    "UnknownOpError",
    "check_op",
    "expected_shape",
    "get_op",
    "list_ops",
    "register_op",
    "registering_as",
    "set_plugin_autoload",
    "warn_once",
]
