"""The ``--tensorboard`` flag of the run commands (search, train, cv, demo)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nasspeech.config import RunConfig


def add_tensorboard_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tensorboard", action="store_true",
                   help="also log to TensorBoard (<run dir>/tensorboard; like log.tensorboard: "
                        "true in the config; needs the tensorboard extra)")


def tensorboard_config(config: RunConfig, flag: bool) -> RunConfig:
    """``config`` with TensorBoard on if ``flag``. If it is on, the tensorboard package is
    checked now, before the run starts (:class:`~nasspeech.extras.MissingExtraError`)."""
    from nasspeech.observe import require_tensorboard, with_tensorboard

    if flag:
        config = with_tensorboard(config)
    if config.log.tensorboard:
        require_tensorboard()
    return config
