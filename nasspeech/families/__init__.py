"""The built-in op families, ``cnn`` and ``seq``: two registrations through the public API
(:func:`nasspeech.registry.register_family`), as a plugin registers its own."""

from nasspeech.families.cnn import CnnFamily
from nasspeech.families.seq import SeqFamily
from nasspeech.registry import register_family

CNN = register_family(CnnFamily)
SEQ = register_family(SeqFamily)

__all__ = ["CNN", "SEQ", "CnnFamily", "SeqFamily"]
