"""Trace every storage allocation and free of one search step, in order.

The step runs on tensors that allocate nothing: fake CPU tensors
(:class:`~torch._subclasses.fake_tensor.FakeTensorMode`) here, or meta tensors with the
fast tracer of :mod:`nasspeech.memory.meta_trace` (what CUDA-target estimates use); every
aten op still computes the shapes, strides and storages of its outputs. A
:class:`~torch.utils._python_dispatch.TorchDispatchMode` sees each op's outputs; a storage
it has not seen before is an allocation of ``storage.nbytes()`` bytes, and a weak reference
to the storage object records its free. Each allocation is attributed to a component and
candidate op (module forward hooks; in the backward pass, the autograd node, tagged with the
module that created it) and to a category.

The same tracer runs on real tensors too (``fake=False``), which the tests use.
"""

from __future__ import annotations

import contextlib
import gc
import weakref
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from nasspeech.kernels.precision import modelled_autocast
from nasspeech.kernels.recompute import recompute_depthwise
from nasspeech.memory import overheads
from nasspeech.memory.autocast_model import AutocastModel
from nasspeech.memory.cudnn_rnn import emulate_cudnn_rnns
from nasspeech.memory.records import (
    BN_BACKWARD,
    LOCAL_SCALAR_DENSE,
    Alloc,
    Owner,
    Trace,
    bn_backward_layout,
    dense,
    scalar_value,
)

_OWNER_KEY = "nasspeech_memory_owner"
PROGRESS_EVERY = 50_000
_ADD = torch.ops.aten.add.Tensor
_MKLDNN_RNN = torch.ops.aten.mkldnn_rnn_layer.default
def owner_map(model: nn.Module) -> dict[int, Owner]:
    """``id(module) -> (component, candidate op)`` for every module of a supernet."""
    owners: dict[int, Owner] = {}
    for name, child in model.named_children():
        for m in child.modules():
            owners[id(m)] = (name, None)
    components = getattr(model, "components", {})
    for cname, comp in components.items():
        for m in comp.modules():
            owners[id(m)] = (cname, None)
        for cell in getattr(comp, "cells", []):
            for edge in getattr(cell, "edges", []):
                for j, op_module in enumerate(edge.ops):
                    op_name = comp.cfg.ops[edge.op_index[j]]
                    for m in op_module.modules():
                        owners[id(m)] = (cname, op_name)
    return owners


class StopTrace(Exception):
    """Raised inside the step to end a partial trace (``stop_after_tasks``)."""


class _StorageRef(weakref.ref):
    """A weak reference to a storage that remembers which allocation it is (its callback
    records the free; cheaper than :func:`weakref.finalize`)."""

    __slots__ = ("index", "key")


_task_id = torch._C._current_graph_task_id
_current_node = torch._C._current_autograd_node


class _Tracker(TorchDispatchMode):
    """Records new storages among op outputs and their frees.

    ``attribute=False`` skips what only the report needs (owners via module hooks and
    autograd nodes, saved-activation marks); the events and sizes are the same.
    """

    #: what the saved-tensor hook keeps of a saved tensor (a tensor sharing its storage,
    #: without its autograd history: keeping the tensor itself would make reference cycles)
    detach_saved = staticmethod(torch.Tensor.detach)

    def __init__(self, trace: Trace, fake: bool, target: str,
                 progress: Callable[[str], None] | None = None, attribute: bool = True) -> None:
        super().__init__()
        self.progress = progress
        self.trace = trace
        self.fake = fake
        self.target = target
        self.attribute = attribute
        if not attribute:
            trace.nbytes = []  # a sizes-only trace: no per-storage records
        self.live: dict[int, int] = {}  # id(storage object) -> alloc index
        self.refs: list[_StorageRef] = []
        self._free_callback = self._on_free
        self.stack: list[Owner | None] = []
        self.closed = False
        self.task_last_event: dict[int, int] = {}
        self.pending: tuple[int, int, int, int] | None = None
        self.alias: dict[int, int] = {}
        self.ops_seen: set[Any] = set()
        #: end the trace (:class:`StopTrace`) at the first allocation outside the autograd
        #: graph tasks once this many backward passes have run (None: trace the whole step)
        self.stop_after_tasks: int | None = None

    # -- storages ----------------------------------------------------------------------
    def adopt(self, tensors: Iterable[torch.Tensor], category: str, owner: Owner) -> None:
        """Register storages that exist before the step (parameters, state, batches)."""
        for t in tensors:
            s = t.untyped_storage()
            if id(s) in self.live or s.nbytes() == 0:
                continue
            index = self._new(s, s.nbytes(), category, owner, "initial", -1)
            self.trace.initial.append(index)

    def _new(self, s: Any, nbytes: int, category: str, owner: Owner | None, aten: str,
             task: int) -> int:
        index = self._record_alloc(nbytes, category, owner, aten, task)
        key = id(s)
        self.live[key] = index
        ref = _StorageRef(s, self._free_callback)
        ref.key, ref.index = key, index
        self.refs.append(ref)
        return index

    def _record_alloc(self, nbytes: int, category: str, owner: Owner | None, aten: str,
                      task: int) -> int:
        if not self.attribute:
            sizes = self.trace.nbytes
            sizes.append(nbytes)  # type: ignore[union-attr]
            return len(sizes) - 1  # type: ignore[arg-type]
        comp, op = owner if owner is not None else ("other", None)
        allocs = self.trace.allocs
        allocs.append(Alloc(nbytes, category, comp, op, aten, task))
        return len(allocs) - 1

    def _on_free(self, ref: _StorageRef) -> None:
        key, index = ref.key, ref.index
        live = self.live
        if live.get(key) == index:
            del live[key]
        if not self.closed:
            if self.alias:
                index = self.alias.pop(index, index)
            self._event(~index, _task_id())

    def _event(self, e: int, task: int) -> None:
        pending = self.pending
        if pending is not None:
            self.pending = None
            if e < 0:
                result, position, old, other = pending
                if ~e == old:
                    # autograd accumulated two gradients with ``old + new`` and dropped
                    # ``old`` at once: on real tensors the engine adds in place into ``old``
                    # there (it never does for tensor subclasses such as FakeTensor), so the
                    # sum lives in ``old``'s storage and no new storage is allocated
                    del self.trace.events[position]
                    if self.attribute:
                        self.trace.allocs[result].category = "merged"
                    self.alias[result] = old
                    return
                if ~e == other:  # the incoming gradient may be released first
                    self.pending = pending
        events = self.trace.events
        events.append(e)
        if self.progress is not None and len(events) % PROGRESS_EVERY == 0:
            self.progress(f"  {len(events)} allocator events so far")
        if task != -1:
            self.task_last_event[task] = len(events) - 1

    # -- dispatch ----------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if self.fake and func is LOCAL_SCALAR_DENSE:
            return scalar_value(args[0])
        out = func(*args, **(kwargs or {}))
        if self.fake and func is BN_BACKWARD:
            out = bn_backward_layout(out, args)
        if self.closed:
            return out
        self.ops_seen.add(func)
        if isinstance(out, torch.Tensor):
            self._record(func, out, 0, args)
        elif isinstance(out, (tuple, list)):
            for i, t in enumerate(out):
                if isinstance(t, torch.Tensor):
                    self._record(func, t, i, args)
        return out

    def _record(self, func: Any, t: torch.Tensor, index: int, args: tuple) -> None:
        s = t.untyped_storage()
        if id(s) in self.live:
            return
        nbytes = s.nbytes()
        if func is _MKLDNN_RNN and index == 3 and self.fake:
            nbytes = self._rnn_workspace(args)
        if nbytes:
            self._alloc(func, t, s, nbytes, args)

    def _alloc(self, func: Any, t: torch.Tensor, s: Any, nbytes: int, args: tuple) -> None:
        """``t`` (an output of ``func``) has a storage ``s`` the step has not seen before.
        (:meth:`_new` and :meth:`_event`, inlined: this runs for every allocation.)"""
        task = _task_id()
        if (task == -1 and self.stop_after_tasks is not None
                and len(self.task_last_event) >= self.stop_after_tasks):
            self.closed = True  # what the step frees while it unwinds is not the step's
            raise StopTrace
        if task != -1:
            owner = None
            if self.attribute:
                node = _current_node()
                if node is not None:
                    owner = node.metadata.get(_OWNER_KEY)
            category = "gradients"
        else:
            owner = self.stack[-1] if self.stack else None
            category = "transient"
        if self.attribute:
            comp, op = owner if owner is not None else ("other", None)
            allocs = self.trace.allocs
            index = len(allocs)
            allocs.append(Alloc(nbytes, category, comp, op, func.__name__, task))
        else:
            sizes = self.trace.nbytes
            index = len(sizes)  # type: ignore[arg-type]
            sizes.append(nbytes)  # type: ignore[union-attr]
        key = id(s)
        self.live[key] = index
        ref = _StorageRef(s, self._free_callback)
        ref.key, ref.index = key, index
        self.refs.append(ref)
        events = self.trace.events
        if self.pending is not None or self.progress is not None:
            self._event(index, task)
        else:
            events.append(index)
            if task != -1:
                self.task_last_event[task] = len(events) - 1
        if task != -1 and func is _ADD:
            old = args[0]
            if isinstance(old, torch.Tensor) and old.shape == t.shape and dense(old):
                new = args[1]
                self.pending = (
                    index, len(events) - 1, self._index_of(old),
                    self._index_of(new) if isinstance(new, torch.Tensor) else -1,
                )

    def seen_ops(self) -> set[Any]:
        """The aten ops the step dispatched."""
        return self.ops_seen

    def _index_of(self, t: torch.Tensor) -> int:
        index = self.live.get(id(t.untyped_storage()), -1)
        return self.alias.get(index, index)

    def _rnn_workspace(self, args: tuple) -> int:
        if self.target == "cpu":
            return overheads.mkldnn_rnn_workspace_bytes(args)
        # CUDA: cuDNN keeps a reserve space instead. Arguments: (input (T, B, I), w0..w3,
        # hx, cx, reverse, batch_sizes, mode, hidden_size, ...)
        x, hidden = args[0], int(args[10])
        return overheads.cudnn_rnn_reserve_bytes("lstm", x.shape[0], x.shape[1], hidden)

    # -- hooks -------------------------------------------------------------------------
    def mark_saved(self, t: torch.Tensor) -> None:
        index = self.live.get(id(t.untyped_storage()))
        if index is not None:
            alloc = self.trace.allocs[index]
            if alloc.category == "transient":
                alloc.category = "saved_activations"


def _tag_nodes(out: Any, owner: Owner | None) -> None:
    tensors = out if isinstance(out, (tuple, list)) else (out,)
    todo = [t.grad_fn for t in tensors if isinstance(t, torch.Tensor) and t.grad_fn is not None]
    while todo:
        node = todo.pop()
        meta = node.metadata
        if _OWNER_KEY in meta:
            continue
        meta[_OWNER_KEY] = owner
        todo.extend(n for n, _ in node.next_functions if n is not None)


class StepTracer:
    """Context for tracing: ``with StepTracer(model, ...) as tr: step()``; then ``tr.trace``.

    ``tracker`` builds the dispatch mode (default: :class:`_Tracker` on fake or real
    tensors); ``attribute=False`` records events and sizes only: no owners, categories or
    saved-activation marks. The hooks run either way: walking the autograd graph from module
    outputs, and saving through hooks, change the order in which autograd releases storages,
    and the events must not depend on the mode.
    """

    def __init__(
        self,
        model: nn.Module,
        persistent: dict[str, list[torch.Tensor]],
        fake_mode: Any = None,
        target: str = "cuda",
        batch_size: int = 0,
        progress: Callable[[str], None] | None = None,
        tracker: Callable[[Trace], _Tracker] | None = None,
        attribute: bool = True,
    ) -> None:
        if target not in ("cuda", "cpu"):
            raise ValueError(f"target must be 'cuda' or 'cpu', got {target!r}")
        self.trace = Trace(batch_size=batch_size, meta={"target": target})
        self.fake_mode = fake_mode
        self.attribute = attribute
        if tracker is not None:
            self.tracker = tracker(self.trace)
        else:
            self.tracker = _Tracker(self.trace, fake_mode is not None, target, progress,
                                    attribute)
        self.owners = owner_map(model) if attribute else {}
        alpha_ids = {id(a) for a in getattr(model, "alpha_parameters", list)()}
        param_owner = {}
        if attribute:
            for module in model.modules():
                owner = self.owners.get(id(module), ("other", None))
                for p in module._parameters.values():
                    if p is not None:
                        param_owner[id(p)] = owner
                for b in module._buffers.values():
                    if b is not None:
                        param_owner[id(b)] = owner
        for category, tensors in persistent.items():
            for t in tensors:
                owner = param_owner.get(id(t), ("other", None))
                cat = "alphas" if id(t) in alpha_ids and category == "weights" else category
                self.tracker.adopt([t], cat, owner)
        self._handles: list[Any] = []
        self._contexts: list[Any] = []

    def _pre(self, module: nn.Module, args: Any) -> None:
        stack = self.tracker.stack
        owner = self.owners.get(id(module))
        stack.append(owner if owner is not None else (stack[-1] if stack else None))

    def _post(self, module: nn.Module, args: Any, out: Any) -> None:
        owner = self.tracker.stack.pop()
        if torch.is_grad_enabled():
            _tag_nodes(out, owner)

    def _pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.attribute:
            self.tracker.mark_saved(t)
        return self.tracker.detach_saved(t)

    def __enter__(self) -> StepTracer:  # noqa: PYI034
        from torch.nn.modules import module as mod

        self._handles = [
            mod.register_module_forward_pre_hook(self._pre),
            mod.register_module_forward_hook(self._post, always_call=True),
        ]
        self._contexts = [torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)]
        if self.fake_mode is not None:
            self._contexts.insert(0, self.fake_mode)
        self._contexts.append(self.tracker)
        for c in self._contexts:
            c.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.tracker.closed = True
        for c in reversed(self._contexts):
            c.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self.tracker.refs.clear()  # their callbacks hold the tracker: no cycle to collect
        self._finish()

    def _finish(self) -> None:
        """Backward allocations freed before their backward pass ended are transient."""
        trace, last = self.trace, self.tracker.task_last_event
        trace.meta["aten_ops"] = sorted({f"aten::{f.__name__.split('.')[0]}"
                                         for f in self.tracker.seen_ops()})
        if not self.attribute:
            return
        freed_at = {~e: i for i, e in enumerate(trace.events) if e < 0}
        for i, a in enumerate(trace.allocs):
            freed = freed_at.get(i, len(trace.events))
            if a.category == "gradients" and a.task != -1 and freed <= last.get(a.task, -1):
                a.category = "transient"


def _unpack(t: torch.Tensor) -> torch.Tensor:
    return t


def persistent_tensors(setup: Any) -> dict[str, list[torch.Tensor]]:
    """The storages alive before a step: weights (and alphas), buffers, optimiser state,
    gradients left by the previous step, and the two batches."""
    model = setup.model
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    state = []
    for opt in setup.optimizers():
        for st in opt.state.values():
            state.extend(v for v in st.values() if isinstance(v, torch.Tensor))
    return {
        "weights": list(model.parameters()) + list(model.buffers()),
        "gradients": grads,
        "optimizer_state": state,
        "inputs": [*setup.train_batch, *setup.val_batch],
    }


def trace_step(
    setup: Any,
    fake_mode: Any = None,
    target: str = "cuda",
    warmup: bool = True,
    step: Callable[[], Any] | None = None,
    progress: Callable[[str], None] | None = None,
    tracker: Callable[[Trace], _Tracker] | None = None,
    attribute: bool = True,
    stop_after_tasks: int | None = None,
) -> Trace:
    """Trace one search step of ``setup`` (after an untraced warm-up step that creates the
    optimiser state and leaves the gradients a steady-state step starts with).

    ``tracker`` builds the dispatch mode for tensors other than fake or real ones (the meta
    tracer, :mod:`nasspeech.memory.meta_trace`); ``attribute=False`` records events and sizes
    only. ``stop_after_tasks=k`` traces a prefix of the step: up to its first allocation
    after the ``k``-th backward pass (``trace.meta["partial"]`` is then True; the step is
    left unfinished). Python's cyclic garbage collector is paused while tracing (its
    passes over the trace's hundreds of thousands of records cost a second per trace): the
    step frees its storages through reference counting, and a storage kept only by a
    reference cycle counts as alive until the end of the step, whenever a collector would
    have run.
    """
    step = step or setup.run
    rnns = emulate_cudnn_rnns(setup.model) if target == "cuda" else contextlib.nullcontext()
    # bf16 (search.precision): CUDA's autocast, modelled; a CPU target has torch's own
    amp = modelled_autocast(AutocastModel()) if target == "cuda" else contextlib.nullcontext()
    search = getattr(setup, "search", None)
    recomputing = bool(getattr(search, "recompute_depthwise", False))
    attention = contextlib.nullcontext()
    if tracker is not None:
        from nasspeech.memory.cpu_probe import cpu_attention

        attention = cpu_attention()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        with rnns, attention, amp, recompute_depthwise(recomputing):
            if warmup:
                if fake_mode is not None:
                    with fake_mode, _ScalarMode():
                        step()
                elif tracker is not None:
                    with tracker(Trace()) as mode:
                        mode.closed = True
                        step()
                else:
                    step()
            tracer = StepTracer(
                setup.model, persistent_tensors(setup), fake_mode, target,
                batch_size=int(setup.train_batch[0].shape[0]), progress=progress,
                tracker=tracker, attribute=attribute,
            )
            tracer.tracker.stop_after_tasks = stop_after_tasks
            tracer.trace.meta["precision"] = getattr(search, "precision", "fp32")
            tracer.trace.meta["recompute_depthwise"] = recomputing
            with tracer:
                try:
                    step()
                except StopTrace:
                    tracer.trace.meta["partial"] = True
    finally:
        if gc_was_enabled:
            gc.enable()
    return tracer.trace


class _ScalarMode(TorchDispatchMode):
    """Answers ``.item()`` on fake tensors (the step logs losses) with a harmless constant."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is LOCAL_SCALAR_DENSE:
            return scalar_value(args[0])
        return func(*args, **(kwargs or {}))
