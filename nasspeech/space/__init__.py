"""Search spaces: components of DARTS cells joined by hand-overs, the supernet and derived models.

The names below load on first use (PEP 562), so that a leaf of this package
(``space.limits``, ``space.loading``) can be imported by ``nasspeech.genotype`` without
importing the networks, which import ``nasspeech.genotype`` back. Type checkers see the real
imports through the ``TYPE_CHECKING`` block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nasspeech.lazy import lazy_names

if TYPE_CHECKING:
    from nasspeech.space.component_chain import ComponentChain
    from nasspeech.space.component_config import (
        ClassifierConfig,
        ComponentConfig,
        HandoverConfig,
    )
    from nasspeech.space.derived import DerivedModel
    from nasspeech.space.handover import (
        HANDOVERS,
        get_handover,
        list_handovers,
        register_handover,
    )
    from nasspeech.space.search_space import SearchSpace
    from nasspeech.space.supernet import Supernet

_WHERE = {
    "ComponentChain": "component_chain",
    "ClassifierConfig": "component_config",
    "ComponentConfig": "component_config",
    "HandoverConfig": "component_config",
    "DerivedModel": "derived",
    "HANDOVERS": "handover",
    "get_handover": "handover",
    "list_handovers": "handover",
    "register_handover": "handover",
    "SearchSpace": "search_space",
    "Supernet": "supernet",
}

__all__ = sorted(_WHERE)
__getattr__, __dir__ = lazy_names(__name__, _WHERE)
