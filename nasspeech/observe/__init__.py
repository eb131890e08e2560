"""Watching runs as they go: TensorBoard event files (see docs/observe.md)."""

from nasspeech.observe.tensorboard import (
    TB_DIR,
    TensorBoardLog,
    require_tensorboard,
    with_tensorboard,
)

__all__ = ["TB_DIR", "TensorBoardLog", "require_tensorboard", "with_tensorboard"]
