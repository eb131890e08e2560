"""Example nasspeech plugin: the ``tdnn`` op family (1-D convolutions over time)."""
