"""The fast tracer: the step on meta tensors, with op results cached by input metadata.

The fake tracer (:mod:`nasspeech.memory.trace` on :class:`FakeTensor`\\ s) costs 70-150 µs per
aten op: FakeTensor's own dispatch (cache keys, output wrapping) and a Python round trip for
every ``tensor.device`` the autograd engine asks. :class:`MetaTracker` runs the same step on
plain *meta* tensors (no subclass, no fake mode) under one dispatch mode that

- records storages exactly like the fake tracer (it is a :class:`~nasspeech.memory.trace.
  _Tracker`: same attribution, same autograd fix-ups);
- answers each functional op from a cache keyed by the op and its inputs' metadata (shape,
  stride, dtype, whether on the meta device, and ``requires_grad`` of tensors; scalars with
  their type), building the outputs with ``empty_strided`` (or ``set_`` on a storage of the
  recorded size) on the meta device: an op's meta kernel, often Python reference code, runs
  once per distinct signature instead of once per call;
- skips the kernels of in-place ops whose signature it has seen (meta kernels only check
  shapes, and these ops change no metadata);
- gives the answers a fake *CPU* tensor gives: convolution outputs in the memory format the
  CPU backend picks (FakeTensor's convolution rule), scaled-dot-product attention through the
  kernel PyTorch picks for CPU tensors (:func:`~nasspeech.memory.cpu_probe.cpu_attention`),
  a constant for ``.item()``.

The result is the fake trace, event for event and byte for byte (tests compare the two, and
the fake trace is compared with a real CPU run). It serves CUDA-target traces only: the CPU
target needs oneDNN's LSTM workspaces, which only the fake tracer measures.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from nasspeech.memory.cpu_probe import arg_key, cpu_conv_layout
from nasspeech.memory.records import (
    BN_BACKWARD,
    LOCAL_SCALAR_DENSE,
    Trace,
    bn_backward_layout,
    scalar_value,
)
from nasspeech.memory.trace import _Tracker

_CONVS = {torch.ops.aten.convolution.default, torch.ops.aten._convolution.default,
          torch.ops.aten.convolution_backward.default}
_empty_strided = torch.empty_strided
_DisableTorchDispatch = torch._C._DisableTorchDispatch

# how an op is handled
_RUN, _FUNCTIONAL, _INPLACE, _ITEM = 0, 1, 2, 3
#: in-place ops that change a tensor's metadata: always run
_METADATA_MUTATING = {
    "resize_", "resize_as_", "set_", "as_strided_", "squeeze_", "unsqueeze_", "t_",
    "transpose_", "swapdims_", "swapaxes_", "detach_", "_coalesced_", "sparse_resize_",
    "sparse_resize_and_clear_", "_resize_output_", "_resize_output",
}


def _classify(func: Any) -> int:
    if func is LOCAL_SCALAR_DENSE:
        return _ITEM
    schema = func._schema
    if any(r.alias_info is not None and not r.alias_info.is_write for r in schema.returns):
        return _RUN  # views: cheap C++ kernels, and their outputs must alias their input
    if func.__name__.split(".")[0] in _METADATA_MUTATING:
        return _RUN
    return _INPLACE if schema.is_mutable else _FUNCTIONAL


def _key(fid: int, args: tuple, kwargs: dict | None) -> tuple:
    """The cache key of a call: the op, and its arguments' metadata. A tensor's storage
    offset is left out: an op's own outputs do not depend on it (an output that aliases an
    input is detected and never cached)."""
    key = [fid]
    append = key.append
    for a in args:
        t = type(a)
        if t is Tensor:
            append((a.shape, a.stride(), a.dtype, a.is_meta, a.requires_grad))
        elif t is int:
            append(a)
        else:
            append(arg_key(a))
    if kwargs:
        for k, v in kwargs.items():
            append(k)
            append(arg_key(v))
    return tuple(key)


class _NotCacheable(Exception):
    pass


def _storage_ids(values: Any) -> set[int]:
    out = set()
    stack = list(values)
    while stack:
        v = stack.pop()
        if isinstance(v, Tensor):
            out.add(id(v.untyped_storage()))
        elif isinstance(v, (list, tuple)):
            stack.extend(v)
    return out


# A spec rebuilds an op's result from metadata:
#   (_ONE, shape, stride, dtype, device, nbytes)   one tensor, its own minimal storage
#   (_MANY, container, items)                      several values; items are
#       ("v", value) | ("t", shape, stride, dtype, device) | ("s", shape, stride, dtype,
#       device, offset, nbytes, group)  (a tensor on storage ``group`` of ``nbytes`` bytes)
_ONE, _MANY = 0, 1


def _make_spec(out: Any, inputs: set[int]) -> tuple | None:
    """How to rebuild ``out`` from metadata, or None if it cannot be (an output shares an
    input's storage, or is neither a tensor nor a plain value)."""
    groups: dict[int, int] = {}
    counts: dict[int, int] = {}

    def item(v: Any) -> tuple:
        if isinstance(v, Tensor):
            if type(v) is not Tensor:
                raise _NotCacheable
            s = v.untyped_storage()
            if id(s) in inputs:
                raise _NotCacheable
            group = groups.setdefault(id(s), len(groups))
            counts[group] = counts.get(group, 0) + 1
            minimal = _empty_strided(v.shape, v.stride(), dtype=v.dtype, device=v.device)
            plain = (v.storage_offset() == 0
                     and minimal.untyped_storage().nbytes() == s.nbytes())
            return (plain, tuple(v.shape), v.stride(), v.dtype, v.device, v.storage_offset(),
                    s.nbytes(), group)
        if v is None or type(v) in (int, float, bool):
            return (None, v)
        raise _NotCacheable

    try:
        if isinstance(out, Tensor):
            items, container = [item(out)], None
        elif type(out) in (tuple, list):
            items, container = [item(v) for v in out], type(out)
        else:
            return None
    except _NotCacheable:
        return None
    specs = []
    for it in items:
        if it[0] is None:
            specs.append(("v", it[1]))
        elif it[0] and counts[it[7]] == 1:
            specs.append(("t", *it[1:5]))
        else:
            specs.append(("s", *it[1:]))
    if container is None and specs[0][0] == "t":
        return (_ONE, *specs[0][1:], items[0][6])
    return (_MANY, container, specs)


def _build(spec: tuple) -> Any:
    if spec[0] == _ONE:
        return _empty_strided(spec[1], spec[2], dtype=spec[3], device=spec[4])
    out = []
    storages: dict[int, Any] = {}
    for item in spec[2]:
        kind = item[0]
        if kind == "v":
            out.append(item[1])
        elif kind == "t":
            out.append(_empty_strided(item[1], item[2], dtype=item[3], device=item[4]))
        else:
            _, shape, stride, dtype, device, offset, nbytes, group = item
            s = storages.get(group)
            if s is None:
                s = storages[group] = torch.UntypedStorage(nbytes, device=device)
            out.append(torch.empty(0, dtype=dtype, device=device).set_(s, offset, shape, stride))
    return out[0] if spec[1] is None else spec[1](out)


def _locate(v: Any, args: tuple, kwargs: dict | None) -> tuple:
    for i, a in enumerate(args):
        if a is v:
            return ("arg", i)
    for k, a in (kwargs or {}).items():
        if a is v:
            return ("kw", k)
    raise _NotCacheable


def _inplace_spec(out: Any, args: tuple, kwargs: dict | None) -> Any:
    """An in-place op returns some of its arguments, or nothing: which ones."""
    try:
        if out is None:
            return ("none",)
        if isinstance(out, Tensor):
            return ("one", _locate(out, args, kwargs))
        if type(out) in (tuple, list):
            return ("many", type(out), [_locate(v, args, kwargs) for v in out])
    except _NotCacheable:
        return False
    return False


def _fetch(loc: tuple, args: tuple, kwargs: dict | None) -> Any:
    return args[loc[1]] if loc[0] == "arg" else kwargs[loc[1]]  # type: ignore[index]


def _rebuild_inplace(spec: tuple, args: tuple, kwargs: dict | None) -> Any:
    if spec[0] == "none":
        return None
    if spec[0] == "one":
        return _fetch(spec[1], args, kwargs)
    return spec[1](_fetch(loc, args, kwargs) for loc in spec[2])


def _call(func: Any, args: tuple, kwargs: dict | None) -> Any:
    """Run the meta kernel, then correct the layouts where a CPU kernel differs."""
    out = func(*args, **(kwargs or {}))
    if func is BN_BACKWARD:
        out = bn_backward_layout(out, args)
    elif func in _CONVS:
        out = cpu_conv_layout(func, args, kwargs, out)
    return out


class MetaTracker(_Tracker):
    """:class:`_Tracker` for meta tensors, with the op-result cache described above.

    ``cache`` may be shared by the traces of one session (the keys hold no tensors).
    """

    @staticmethod
    def detach_saved(t: Tensor) -> Tensor:
        with _DisableTorchDispatch():  # detaching allocates nothing: skip the round trip
            return t.detach()

    @classmethod
    def _should_skip_dynamo(cls) -> bool:  # no torch._dynamo wrapper around every call
        return False

    def __init__(self, trace: Trace, target: str = "cuda", progress: Any = None,
                 attribute: bool = True, cache: dict | None = None) -> None:
        if target != "cuda":
            raise ValueError("the meta tracer models CUDA targets only; use the fake tracer")
        super().__init__(trace, True, target, progress, attribute)
        self.cache: dict = {} if cache is None else cache
        self.kinds: dict[int, int] = {}
        self.funcs: dict[int, Any] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        fid = id(func)
        kind = self.kinds.get(fid)
        if kind is None:
            kind = self.kinds[fid] = _classify(func)
            self.funcs[fid] = func
        if kind == _FUNCTIONAL:
            key = _key(fid, args, kwargs)
            spec = self.cache.get(key)
            if spec is None:
                out = self._miss(func, fid, args, kwargs)
                self.cache[key] = _make_spec(out, _storage_ids(args)
                                             | _storage_ids((kwargs or {}).values())) or False
            elif spec is False:
                out = _call(func, args, kwargs)
            elif spec[0] == _ONE:
                out = _empty_strided(spec[1], spec[2], dtype=spec[3], device=spec[4])
                if spec[5] and not self.closed:
                    self._alloc(func, out, out.untyped_storage(), spec[5], args)
                return out
            else:
                out = _build(spec)
        elif kind == _INPLACE:
            key = _key(fid, args, kwargs)
            spec = self.cache.get(key)
            if spec is None:
                out = self._miss(func, fid, args, kwargs)
                self.cache[key] = _inplace_spec(out, args, kwargs)
            elif spec is False:
                out = func(*args, **(kwargs or {}))
            else:
                out = _rebuild_inplace(spec, args, kwargs)  # its own arguments
        elif kind == _ITEM:
            return scalar_value(args[0])
        else:
            out = func(*args, **(kwargs or {}))
        if self.closed:
            return out
        if isinstance(out, Tensor):
            self._record(func, out, 0, args)
        elif isinstance(out, (tuple, list)):
            for i, t in enumerate(out):
                if isinstance(t, Tensor):
                    self._record(func, t, i, args)
        return out

    def _miss(self, func: Any, fid: int, args: tuple, kwargs: dict | None) -> Any:
        """Run an op the cache has not seen. A ``_foreach_*`` op runs element by element
        (each distinct element once: its meta kernel is Python code per element, and an
        optimiser's foreach call spans every parameter), its outputs put together."""
        if not func.__name__.startswith("_foreach_") or not args or not isinstance(
            args[0], (list, tuple)
        ) or not args[0]:
            return _call(func, args, kwargs)
        kwargs = kwargs or {}
        inplace = self.kinds[fid] == _INPLACE
        outs = []
        for i in range(len(args[0])):
            a = tuple([x[i]] if isinstance(x, (list, tuple)) else x for x in args)
            k = {n: [v[i]] if isinstance(v, (list, tuple)) else v for n, v in kwargs.items()}
            key = ("element", _key(fid, a, k))
            spec = self.cache.get(key)
            if spec is None:
                out = func(*a, **k)
                if inplace:
                    spec = "none" if out is None else False
                else:
                    spec = _make_spec(out, _storage_ids(a) | _storage_ids(k.values())) or False
                    if spec and (spec[0] != _MANY or len(spec[2]) != 1):
                        spec = False
                self.cache[key] = spec
            if spec is False:  # not element-wise after all: run the whole call
                return _call(func, args, kwargs)
            outs.append(spec)
        if inplace:
            return None
        return [_build(spec)[0] for spec in outs]

    def seen_ops(self) -> set[Any]:
        return {f for fid, f in self.funcs.items() if self.kinds[fid] != _ITEM}
