"""nasspeech: pluggable differentiable neural architecture search for speech.

The public API lives here. Importing :mod:`nasspeech` registers the built-in op families
and ops (through the same public calls a plugin uses); the search space, genotype and
search modules are imported on first use of their names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# the built-ins register themselves: the families first, then the ops that name them
from nasspeech import families as _families  # noqa: F401
from nasspeech.lazy import lazy_names
from nasspeech.ops import cnn as _cnn_ops  # noqa: F401
from nasspeech.ops import seq as _seq_ops  # noqa: F401
from nasspeech.registry import (
    DuplicateOpError,
    Family,
    Operation,
    PluginWarning,
    Registry,
    UnknownOpError,
    get_family,
    get_op,
    list_families,
    list_ops,
    register_family,
    register_op,
    set_plugin_autoload,
)

if TYPE_CHECKING:  # what the lazy names below are, for type checkers
    from nasspeech.genotype import Genotype
    from nasspeech.search.architect import Architect
    from nasspeech.space.component_config import ComponentConfig
    from nasspeech.space.handover import get_handover, list_handovers, register_handover
    from nasspeech.space.search_space import SearchSpace
    from nasspeech.space.supernet import Supernet

__version__ = "0.1.0"

# name -> module that defines it (imported lazily on first attribute access)
_LAZY = {
    "register_handover": "space.handover",
    "get_handover": "space.handover",
    "list_handovers": "space.handover",
    "SearchSpace": "space.search_space",
    "ComponentConfig": "space.component_config",
    "Supernet": "space.supernet",
    "Genotype": "genotype",
    "Architect": "search.architect",
}
__getattr__, __dir__ = lazy_names(__name__, _LAZY)

__all__ = [
    "Architect",
    "ComponentConfig",
    "DuplicateOpError",
    "Family",
    "Genotype",
    "Operation",
    "PluginWarning",
    "Registry",
    "SearchSpace",
    "Supernet",
    "UnknownOpError",
    "get_family",
    "get_handover",
    "get_op",
    "list_families",
    "list_handovers",
    "list_ops",
    "register_family",
    "register_handover",
    "register_op",
    "set_plugin_autoload",
]

