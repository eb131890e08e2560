"""nasspeech-seqplus: GRU and transformer-encoder ``seq`` ops for nasspeech (an example plugin).

The ops are registered by :mod:`nasspeech_seqplus.ops`, which nasspeech imports through the
``nasspeech.ops`` entry point; nothing needs to be imported by hand.
"""

__version__ = "0.1.0"
