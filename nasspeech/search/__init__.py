"""Search: the Architect (alpha optimisation) and the shared training steps."""

from nasspeech.search.architect import Architect
from nasspeech.search.loop import NonFiniteLossError, StepResult, predict, search_step, weight_step

__all__ = ["Architect", "NonFiniteLossError", "StepResult", "predict", "search_step",
           "weight_step"]
