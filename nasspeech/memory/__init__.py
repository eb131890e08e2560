"""GPU memory estimation for DARTS searches: trace the real search step on fake tensors,
replay it through a model of the CUDA caching allocator, add device overheads."""

from nasspeech.memory.estimate import MemoryEstimate, estimate
from nasspeech.memory.profiles import PROFILES, GpuProfile, UnknownGpuError, get_profile

__all__ = ["PROFILES", "GpuProfile", "MemoryEstimate", "UnknownGpuError", "estimate",
           "get_profile"]
