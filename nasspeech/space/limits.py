"""Hard limits of a search space's fields, and the cap on what an error message prints.

The limits are far above any sensible network (DARTS searches 8 cells of 16 channels and
retrains 20 cells of 36): they turn a typo such as ``channels: 100000000000`` into an error
that names the field instead of an allocation that never ends. What a space may hold overall
is bounded by :mod:`nasspeech.space.size`.
"""

from __future__ import annotations

import reprlib

#: Per-field upper limits (inclusive).
MAX_CELLS = 1000
MAX_NODES = 32
MAX_CHANNELS = 65536
MAX_STEM_MULTIPLIER = 64
MAX_INPUT_SIZE = 1 << 20  # one axis of input_shape
MAX_INPUT_VALUES = 1 << 26  # values of one sample (256 MiB as float32)
MAX_CLASSES = 100_000
MAX_HIDDEN = 1 << 20  # one classifier layer
MAX_HIDDEN_LAYERS = 16
MAX_NAME_LENGTH = 64

#: A cnn component needs at least 2 channels per mixed op: a reduction (factorized reduce)
#: splits the channels into two halves, and one channel would leave a half empty.
MIN_CNN_CHANNELS = 2

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def short(value: object) -> str:
    """``repr(value)``, cut to a few dozen characters: an error never prints a whole input."""
    return _repr.repr(value)
