"""Data-parallel search on ``torch.distributed``: every process holds the whole supernet and
takes a contiguous slice of every global batch; gradients are summed across processes
explicitly.

Why not ``DistributedDataParallel``: DDP all-reduces only what ``loss.backward()`` leaves in
``.grad``. The Architect takes its gradients with ``torch.autograd.grad`` (alphas, the virtual
step, the finite-difference terms), which DDP never sees, and DDP does not support double
backward (the exact Hessian-vector product). So the Architect and the weight step pass every
gradient list they take through :meth:`Group.all_reduce_sum` (their ``grad_sync`` hook).

Weighting: a process's loss is its local mean times ``n_local / n_global``
(:meth:`Group.loss`), so the sum of the processes' gradients is the gradient of the global
batch's mean loss, uneven shards included. Every collective is then a plain sum, whose
backward is again a sum: the synchronised BatchNorm and the exact (double-backward)
Hessian-vector product are the one-process graph spread over processes.

The environment is torchrun's (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``); ``nasspeech search --nproc N`` sets it for the processes it starts.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

BACKENDS: tuple[str, ...] = ("auto", "gloo", "nccl")
#: Seconds a collective waits for the other processes before the group gives up.
DEFAULT_TIMEOUT_S = 600.0
ENV_REQUIRED: tuple[str, ...] = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class DistributedSetupError(ValueError):
    """The process group cannot be set up as asked (environment, backend, batch size)."""


class RankFailedError(RuntimeError):
    """Another process failed or stopped answering; this one stops too."""


class RankMismatchError(RuntimeError):
    """Processes that must hold identical alphas and weights do not (``check_ranks``)."""


@dataclass(frozen=True)
class RankEnv:
    """This process's place in the group, as torchrun describes it."""

    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    local_world_size: int | None = None


def rank_env(environ: Mapping[str, str] | None = None) -> RankEnv | None:
    """The torchrun environment of this process; ``None`` when none of its variables is set.

    A partial environment raises :class:`DistributedSetupError` naming what is missing."""
    env = os.environ if environ is None else environ
    present = [v for v in (*ENV_REQUIRED, "LOCAL_RANK") if v in env]
    if not present:
        return None
    missing = [v for v in ENV_REQUIRED if v not in env]
    if missing:
        raise DistributedSetupError(
            f"incomplete torch.distributed environment: {', '.join(present)} set but "
            f"{', '.join(missing)} missing (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, "
            "MASTER_ADDR and MASTER_PORT; unset them for a single-process run)")

    def integer(name: str, low: int, high: int | None = None) -> int:
        text = env[name].strip()
        try:
            value = int(text)
        except ValueError:
            raise DistributedSetupError(
                f"environment variable {name}={text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            bound = f"{low}..{high}" if high is not None else f">= {low}"
            raise DistributedSetupError(f"environment variable {name}={value} is not {bound}")
        return value

    world = integer("WORLD_SIZE", 1)
    rank = integer("RANK", 0, world - 1)
    local = integer("LOCAL_RANK", 0) if "LOCAL_RANK" in env else rank
    local_world = integer("LOCAL_WORLD_SIZE", 1) if "LOCAL_WORLD_SIZE" in env else None
    port = integer("MASTER_PORT", 1, 65535)
    addr = env["MASTER_ADDR"].strip()
    if not addr:
        raise DistributedSetupError("environment variable MASTER_ADDR is empty")
    return RankEnv(rank, world, local, addr, port, local_world)


def check_world(batch_size: int, world_size: int, what: str = "search.batch_size") -> None:
    """Every process needs at least one sample of each (full) global batch."""
    if batch_size < world_size:
        raise DistributedSetupError(
            f"{what} {batch_size} is smaller than the {world_size} processes: each process "
            "needs at least one sample of every batch; raise the batch size or use fewer "
            "processes")


def local_batch_size(batch_size: int, world_size: int) -> int:
    """The largest slice of a global batch one process takes (rank 0's)."""
    return -(-batch_size // max(1, world_size))


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous slice of ``n`` samples; sizes differ by
    at most one, larger slices first (so rank 0 always has a sample when ``n >= 1``)."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def choose_backend(requested: str, device: torch.device,
                   local_world_size: int | None = None) -> str:
    """``auto``: NCCL for CUDA when each process has a GPU of its own, else gloo."""
    if requested not in BACKENDS:
        raise DistributedSetupError(
            f"backend must be one of {', '.join(BACKENDS)}, got {requested!r}")
    cuda = device.type == "cuda"
    if requested == "nccl":
        if not cuda:
            raise DistributedSetupError(
                "backend nccl needs CUDA, but the search runs on the CPU (the config's device, "
                "or torch sees no CUDA device); use `nasspeech search --backend gloo` or auto")
        if not dist.is_nccl_available():
            raise DistributedSetupError(
                f"backend nccl: this torch build ({torch.__version__}) has no NCCL; use "
                "`nasspeech search --backend gloo` or auto")
    if requested != "auto":
        return requested
    own_gpu = local_world_size is None or local_world_size <= torch.cuda.device_count()
    return "nccl" if cuda and own_gpu and dist.is_nccl_available() else "gloo"


def _lost(exc: BaseException) -> bool:
    """Whether ``exc`` is a collective that failed because of another process."""
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        k in text for k in ("gloo", "Gloo", "NCCL", "Connection", "Timed out", "timed out"))


class Group:
    """This process in a started process group, and the collectives the search uses.

    Counts what it all-reduces (``bytes_reduced``, ``reductions``) for the communication
    report. Use :meth:`start` to join a group, :meth:`close` to leave it.
    """

    def __init__(self, rank: int, world_size: int, device: torch.device, backend: str,
                 timeout_s: float) -> None:
        self.rank, self.world_size = rank, world_size
        self.device, self.backend, self.timeout_s = device, backend, timeout_s
        self.bytes_reduced = 0
        self.reductions = 0
        self._shares: dict[int, float] = {}
        self._forward_counts = True
        self._setup_sent = False

    # -- setup -------------------------------------------------------------------------
    @classmethod
    def start(cls, env: RankEnv, device: torch.device, backend: str = "auto",
              timeout_s: float = DEFAULT_TIMEOUT_S) -> Group:
        """Join the group ``env`` describes; a CUDA ``device`` becomes ``cuda:LOCAL_RANK``
        (modulo the GPUs visible). ``timeout_s`` bounds every collective."""
        name = choose_backend(backend, device, env.local_world_size)
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if name == "nccl" and env.local_rank >= count:
                raise DistributedSetupError(
                    f"process {env.rank} has LOCAL_RANK {env.local_rank}, but only {count} "
                    "GPU(s) are visible: start at most one process per GPU with NCCL, or use "
                    "`nasspeech search --backend gloo`")
            device = torch.device("cuda", env.local_rank % count)
            torch.cuda.set_device(device)
        host = f"[{env.master_addr}]" if ":" in env.master_addr else env.master_addr
        try:
            dist.init_process_group(
                name, init_method=f"tcp://{host}:{env.master_port}", rank=env.rank,
                world_size=env.world_size, timeout=datetime.timedelta(seconds=timeout_s))
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds here
            raise RankFailedError(
                f"process {env.rank} could not join the group at {host}:{env.master_port} "
                f"within {timeout_s:g} s ({_first_line(exc)})") from None
        return cls(env.rank, env.world_size, device, name, timeout_s)

    def close(self) -> None:
        """Leave the group (no collective: safe after another process failed)."""
        if dist.is_initialized():
            with contextlib.suppress(Exception):
                dist.destroy_process_group()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def comm_device(self) -> torch.device:
        """Where small tensors for collectives live (NCCL needs them on the GPU)."""
        return self.device if self.backend == "nccl" else torch.device("cpu")

    # -- collectives -------------------------------------------------------------------
    def failure(self, exc: BaseException, during: str) -> RankFailedError | None:
        """The user-facing error for a collective that ``exc`` broke (``None``: not one)."""
        if isinstance(exc, (RankFailedError, RankMismatchError)) or not _lost(exc):
            return None
        why = ("no answer within the timeout" if "imed out" in str(exc)
               else "another process exited")
        return RankFailedError(
            f"process {self.rank} lost contact with the other processes during {during} "
            f"({why}, timeout {self.timeout_s:g} s); the failing process's message says why")

    def _call(self, during: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            err = self.failure(exc, during)
            if err is None:
                raise
            raise err from None

    def all_reduce_sum(self, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Sums of ``tensors`` over all processes: one all-reduce per dtype (the tensors are
        flattened into one buffer). Differentiable when an input requires grad (its backward
        is again a sum over processes), as the exact HVP and synchronised BatchNorm need."""
        out = list(tensors)
        by_dtype: dict[torch.dtype, list[int]] = {}
        for i, t in enumerate(tensors):
            by_dtype.setdefault(t.dtype, []).append(i)
        for idx in by_dtype.values():
            flat = torch.cat([tensors[i].reshape(-1) for i in idx])
            if flat.requires_grad:
                flat = self._call("an all-reduce", _SumOverProcesses.apply, flat)
            else:
                self._call("an all-reduce", dist.all_reduce, flat)
            self.bytes_reduced += flat.numel() * flat.element_size()
            self.reductions += 1
            pieces = flat.split([tensors[i].numel() for i in idx])
            for i, piece in zip(idx, pieces):
                out[i] = _like(piece, tensors[i])
        return out

    def broadcast_tensors(self, tensors: Sequence[torch.Tensor]) -> None:
        """Overwrite ``tensors`` in place with rank 0's values (one broadcast per dtype)."""
        by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
        for t in tensors:
            by_dtype.setdefault(t.dtype, []).append(t)
        with torch.no_grad():
            for group in by_dtype.values():
                flat = torch.cat([t.detach().reshape(-1) for t in group])
                self._call("a broadcast", dist.broadcast, flat, 0)
                for t, piece in zip(group, flat.split([t.numel() for t in group])):
                    t.copy_(piece.view(t.shape))

    def broadcast_module(self, module: nn.Module) -> None:
        """Rank 0's parameters and buffers, everywhere."""
        self.broadcast_tensors([*module.parameters(), *module.buffers()])

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` (picklable), everywhere; tensors in it should be on the CPU."""
        box = [obj if self.is_main else None]
        self._call("a broadcast", dist.broadcast_object_list, box, 0)
        return box[0]

    # -- the setup handshake -------------------------------------------------------------
    @contextlib.contextmanager
    def main_setup(self) -> Iterator[None]:
        """On rank 0, around the setup the others wait for: an exception raised before
        :meth:`share_setup` is sent to them (they raise it too) instead of leaving them to
        time out."""
        self._setup_sent = False
        try:
            yield
        except BaseException as exc:
            if self.is_main and not self._setup_sent:
                self._setup_sent = True
                with contextlib.suppress(Exception):
                    self.broadcast_object({"error": str(exc) or type(exc).__name__})
            raise

    def share_setup(self, payload: Any) -> Any:
        """Rank 0's ``payload`` (e.g. a checkpoint to resume), everywhere."""
        self._setup_sent = True
        got = self.broadcast_object({"ok": payload})
        if "error" in got:
            raise RankFailedError(f"process 0 stopped before the search started: {got['error']}")
        return got["ok"]

    # -- checks ------------------------------------------------------------------------
    @staticmethod
    def digest(tensors: Sequence[torch.Tensor]) -> int:
        """A 64-bit hash of the tensors' bytes (bit-exact identity, not closeness)."""
        h = hashlib.blake2b(digest_size=8)
        for t in tensors:
            h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return int.from_bytes(h.digest(), "little", signed=True)

    def check_identical(self, named: Mapping[str, Sequence[torch.Tensor]], when: str) -> None:
        """Raise :class:`RankMismatchError` when any named group of tensors differs, bit for
        bit, between this group's processes (every process raises)."""
        mine = torch.tensor([self.digest(ts) for ts in named.values()], dtype=torch.int64,
                            device=self.comm_device)
        every = [torch.empty_like(mine) for _ in range(self.world_size)]
        self._call("the rank check", dist.all_gather, every, mine)
        names = list(named)
        bad = sorted({names[i] for g in every for i in range(len(names)) if g[i] != every[0][i]})
        if bad:
            ranks = [r for r, g in enumerate(every) if not torch.equal(g, every[0])]
            raise RankMismatchError(
                f"{when}: the {', '.join(bad)} of process(es) {ranks} differ from process 0's "
                "(bit for bit): a gradient was not synchronised or an op is not deterministic")

    # -- sharding ----------------------------------------------------------------------
    @contextlib.contextmanager
    def sharded(self, *batches: Batch) -> Iterator[list[Batch]]:
        """This process's contiguous slice of each global batch, for one step.

        A process left without a sample (a global batch smaller than the group) computes on
        a stand-in (the batch's first sample) whose loss weighs 0: it takes part in every
        collective and contributes nothing."""
        local = []
        for x, y in batches:
            n = len(y)
            if n < 1:
                raise ValueError("an empty batch cannot be sharded")
            lo, hi = shard_bounds(n, self.rank, self.world_size)
            part, share = ((x[lo:hi], y[lo:hi]), (hi - lo) / n) if hi > lo else \
                ((x[:1], y[:1]), 0.0)
            self._shares[id(part[0])] = self._shares[id(part[1])] = share
            local.append(part)
        try:
            yield local
        finally:
            self._shares.clear()

    def share_of(self, target: torch.Tensor) -> float:
        """The share of its global batch that a slice handed out by :meth:`sharded` holds
        (its targets or inputs); 0 for a stand-in sample."""
        share = self._shares.get(id(target))
        if share is None:
            raise RuntimeError("a search loss on a batch that Group.sharded did not hand out: "
                               "its gradient would be weighted wrongly")
        return share

    def loss(self, base: LossFn) -> LossFn:
        """``base`` times this process's share of the batch whose targets it gets."""

        def sharded_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            return base(logits, target) * self.share_of(target)

        return sharded_loss

    def count_forwards(self, model: nn.Module) -> None:
        """Track whether the model's current forward runs on a real slice (not a stand-in);
        :meth:`forward_counts` tells the synchronised BatchNorm."""

        def enter(_module: nn.Module, args: tuple) -> None:
            self._forward_counts = self._shares.get(id(args[0]) if args else -1, 1.0) > 0

        model.register_forward_pre_hook(enter)

    def forward_counts(self) -> bool:
        return self._forward_counts


class _SumOverProcesses(torch.autograd.Function):
    """A differentiable all-reduce (sum): the gradient of a sum over processes is the sum of
    the processes' gradients (again this function, so double backward works too)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        out = x.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return _SumOverProcesses.apply(grad)


def _like(flat: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``flat`` shaped like ``ref``, with its strides (e.g. channels-last) where it has any."""
    view = flat.view(ref.shape)
    if ref.is_contiguous() or view.requires_grad:
        return view
    return torch.empty_like(ref).copy_(view)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


__all__ = ["BACKENDS", "DEFAULT_TIMEOUT_S", "DistributedSetupError", "Group", "RankEnv",
           "RankFailedError", "RankMismatchError", "check_world", "choose_backend",
           "local_batch_size", "rank_env", "shard_bounds"]
