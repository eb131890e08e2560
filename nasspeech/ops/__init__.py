"""Built-in candidate ops: :mod:`~nasspeech.ops.cnn` and :mod:`~nasspeech.ops.seq` register
them through the public API (imported by :mod:`nasspeech`, after the families they belong
to); :mod:`~nasspeech.ops.blocks` holds the modules. The CPU speed-ups they use are in
:mod:`nasspeech.kernels`."""
