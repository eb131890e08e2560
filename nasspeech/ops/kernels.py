"""Moved to :mod:`nasspeech.kernels.dispatch`; this path keeps working."""

from nasspeech.kernels.dispatch import fast_cpu_path, reference_kernels

__all__ = ["fast_cpu_path", "reference_kernels"]
