"""Moved to :mod:`nasspeech.space.component_chain`; these names keep working."""

from nasspeech.space.component_chain import ComponentBuilder, ComponentChain, classifier_head

__all__ = ["ComponentBuilder", "ComponentChain", "classifier_head"]
