"""Hand-designed baselines (emoDARTS Section 4.2) behind a small registry.

>>> from nasspeech.baselines import build_baseline
>>> model = build_baseline("cnn_lstm_att", (1, 128, 128), num_classes=4)

Models return logits (B, num_classes); see :mod:`nasspeech.baselines.models`.
Register your own with ``@register_baseline("name")`` on a function or ``nn.Module`` class
taking ``(input_shape, num_classes, **options)``.
"""

from nasspeech.baselines.models import (  # importing it registers the built-ins
    AttentionPool,
    CNNBaseline,
    CNNLSTMBaseline,
)
from nasspeech.baselines.registry import (
    UnknownBaselineError,
    build_baseline,
    list_baselines,
    register_baseline,
    unregister_baseline,
)

__all__ = [
    "AttentionPool",
    "CNNBaseline",
    "CNNLSTMBaseline",
    "UnknownBaselineError",
    "build_baseline",
    "list_baselines",
    "register_baseline",
    "unregister_baseline",
]
