"""Built-in candidate ops. Importing this package registers them through the public API."""

from nasspeech.ops import cnn, seq  # noqa: F401
