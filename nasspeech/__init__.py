"""nasspeech: pluggable differentiable neural architecture search for speech.

The public API lives here; heavier parts are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from nasspeech.registry import (
    DuplicateOpError,
    Operation,
    PluginWarning,
    UnknownOpError,
    get_op,
    list_ops,
    register_op,
    set_plugin_autoload,
)

__version__ = "0.1.0"

# name -> module that defines it (imported lazily on first attribute access)
_LAZY = {
    "register_handover": "nasspeech.space.handover",
    "get_handover": "nasspeech.space.handover",
    "list_handovers": "nasspeech.space.handover",
    "SearchSpace": "nasspeech.space.config",
    "ComponentConfig": "nasspeech.space.config",
    "Supernet": "nasspeech.space.supernet",
    "Genotype": "nasspeech.genotype",
    "Architect": "nasspeech.search.architect",
}

__all__ = [
    "Architect",
    "ComponentConfig",
    "DuplicateOpError",
    "Genotype",
    "Operation",
    "PluginWarning",
    "SearchSpace",
    "Supernet",
    "UnknownOpError",
    "get_handover",
    "get_op",
    "list_handovers",
    "list_ops",
    "register_handover",
    "register_op",
    "set_plugin_autoload",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'nasspeech' has no attribute {name!r}")
