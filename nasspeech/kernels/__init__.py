"""CPU performance kernels behind the candidate ops (no op is registered here).

- :mod:`~nasspeech.kernels.native`: builds, caches and loads the compiled kernels of
  ``csrc/`` (``torch.ops.nasspeech.*``), or says why it cannot;
- :mod:`~nasspeech.kernels.depthwise`: depthwise convolution with a fast CPU backward
  (compiled weight gradient);
- :mod:`~nasspeech.kernels.dense`: the narrow dense convolutions of search cells, with a
  compiled weight gradient where it beats oneDNN;
- :mod:`~nasspeech.kernels.pooling`: 3x3 max pooling that keeps a one-byte window tap;
- :mod:`~nasspeech.kernels.batchnorm`: BatchNorm without affine parameters that keeps its
  output instead of its input for the backward pass (compiled statistics, normalisation,
  weighted sum and backward);
- :mod:`~nasspeech.kernels.relu`: ``body(relu(x))`` with ``relu(x)`` recomputed, not kept;
- :mod:`~nasspeech.kernels.layout`: gradients kept channels-last;
- :mod:`~nasspeech.kernels.onednn`: routing around a oneDNN hazard of narrow 1x1 convs;
- :mod:`~nasspeech.kernels.precision`: the one autocast context (fp32 / bf16) of every
  forward pass, and the hook through which the memory estimator models CUDA's autocast.

**The interface to tracers** (the memory estimator, or any code that runs the ops on fake
tensors or under saved-tensor hooks), in :mod:`~nasspeech.kernels.dispatch`:

1. the CPU-specific paths run only where :func:`fast_cpu_path` is true: real CPU tensors,
   outside :func:`reference_kernels` (under bf16 autocast, in bf16). Fake and meta
   tensors, GPU tensors and code inside ``reference_kernels()`` take PyTorch's own kernels,
   i.e. what a GPU runs;
2. :func:`~nasspeech.kernels.relu.relu_then` installs its own saved-tensor hooks; hooks that
   are already active (:func:`outer_saved_tensor_hooks`) still see every other saved tensor.
"""

from nasspeech.kernels.dispatch import fast_cpu_path, outer_saved_tensor_hooks, reference_kernels

__all__ = ["fast_cpu_path", "outer_saved_tensor_hooks", "reference_kernels"]
