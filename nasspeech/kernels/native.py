"""Compiled CPU kernels: built once per machine from ``csrc/*.cpp``, loaded on first use.

Some ops have no fast oneDNN kernel at the few channels of a DARTS cell (the depthwise weight
gradient runs 6-38x from its roofline bound). Their C++ kernels live in ``csrc/`` and register
themselves as ``torch.ops.nasspeech.*`` (so profilers name them). :func:`native_ops` compiles
all of them into one library with the machine's C++ compiler the first time a process needs
one (about 20 s on 2 cores; a lock serialises concurrent processes), caches it, and loads it.

The cache is keyed by the sources, the torch and Python versions and the CPU's model and
instruction-set flags: the library is built with ``-march=native``, and a cache shared by
machines with different CPUs keeps one build per CPU kind instead of running another CPU's
instructions. Where no compiler works, or with ``NASSPEECH_NATIVE_KERNELS=0``, the ops fall
back to PyTorch's kernels (one warning says why).

Cache location: ``$NASSPEECH_KERNEL_CACHE``, else ``$XDG_CACHE_HOME/nasspeech/kernels``, else
``~/.cache/nasspeech/kernels``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import sys
import threading
import warnings
from pathlib import Path

_SOURCES = Path(__file__).with_name("csrc")
_FLAGS = ["-O3", "-march=native", "-fopenmp", "-ffp-contract=fast"]
_LOCK = threading.Lock()
_STATE: dict[str, object] = {}

log = logging.getLogger(__name__)


def native_enabled() -> bool:
    """Whether compiled kernels may be used (``NASSPEECH_NATIVE_KERNELS`` is not 0/off/false)."""
    return os.environ.get("NASSPEECH_NATIVE_KERNELS", "1").strip().lower() not in (
        "0", "off", "false", "no")


def _cpu_signature() -> str:
    """The CPU's model name and instruction-set flags (what ``-march=native`` compiles for)."""
    model = flags = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = " ".join(sorted(value.split()))
                if model and flags:
                    break
    except OSError:
        pass
    return f"{platform.machine()}|{model}|{flags}"


def cache_key() -> str:
    """Hash of everything a build depends on."""
    import torch

    digest = hashlib.sha256()
    for part in (torch.__version__, sys.version, " ".join(_FLAGS), _cpu_signature()):
        digest.update(part.encode())
    for source in sorted([*_SOURCES.glob("*.cpp"), *_SOURCES.glob("*.h")]):  # headers too
        digest.update(source.name.encode())
        digest.update(source.read_bytes())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    """Where builds are kept."""
    root = os.environ.get("NASSPEECH_KERNEL_CACHE")
    if root:
        return Path(root)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "nasspeech" / "kernels"


def kernel_sources() -> list[Path]:
    """The C++ files compiled into the library."""
    return sorted(_SOURCES.glob("*.cpp"))


def native_status() -> dict[str, object]:
    """What :func:`native_ops` did or would do in this process, for ``nasspeech kernels``:
    enabled, cache directory and key, whether a build exists, loaded ops, the last error."""
    key = cache_key()
    build = cache_dir() / key
    import torch

    loaded = _STATE.get("ops") is not None
    ops = sorted(n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names()
                 if n.startswith("nasspeech::")) if loaded else []
    return {"enabled": native_enabled(), "cache": str(build), "key": key,
            "built": _is_built(build, key),
            "sources": [s.name for s in kernel_sources()], "loaded": loaded, "ops": ops,
            "error": _STATE.get("error")}


def _library_name(key: str) -> str:
    return f"nasspeech_kernels_{key}"


def _is_built(build: Path, key: str) -> bool:
    return any(build.glob(f"{_library_name(key)}*.so"))


def native_ops() -> object | None:
    """``torch.ops.nasspeech`` with the compiled kernels loaded, or None where they cannot
    be (disabled, or the build failed: warned once per process)."""
    if not native_enabled():
        return None
    if "ops" in _STATE:
        return _STATE["ops"]
    with _LOCK:
        if "ops" not in _STATE:
            _STATE["ops"] = _build_and_load()
    return _STATE["ops"]


def _build_and_load() -> object | None:
    import torch

    key = cache_key()
    build = cache_dir() / key
    try:
        from torch.utils.cpp_extension import load

        build.mkdir(parents=True, exist_ok=True)
        clear_stale_lock(build)
        if not _is_built(build, key):
            log.warning("compiling nasspeech's CPU kernels into %s (once per machine, ~20 s)",
                        build)
        load(name=_library_name(key), sources=[str(s) for s in kernel_sources()],
             extra_cflags=_FLAGS, extra_ldflags=["-fopenmp"], build_directory=str(build),
             is_python_module=False, verbose=False)
    except Exception as exc:  # noqa: BLE001  (no compiler, no headers, a failed build: fall back, loudly)
        text = str(exc).strip()
        _STATE["error"] = f"{type(exc).__name__}: {text.splitlines()[-1] if text else exc!r}"
        warnings.warn(f"nasspeech's compiled CPU kernels are unavailable ({_STATE['error']}); "
                      "PyTorch's kernels are used instead (`nasspeech kernels --build` shows "
                      "the build; NASSPEECH_NATIVE_KERNELS=0 silences this).", RuntimeWarning,
                      stacklevel=3)
        return None
    prune_stale_builds(build)
    return torch.ops.nasspeech


#: A build lock older than this was left by a build that died (torch's lock waits forever).
STALE_LOCK_S = 600.0


def clear_stale_lock(build: Path, max_age_s: float = STALE_LOCK_S) -> bool:
    """Remove ``build/lock`` if a killed build left it behind (older than ``max_age_s``; a
    build takes ~20 s), so that the next process builds instead of waiting forever."""
    import time

    lock = build / "lock"
    try:
        if time.time() - lock.stat().st_mtime > max_age_s:
            log.warning("removing a stale kernel-build lock %s (left by a build that died)", lock)
            lock.unlink()
            return True
    except OSError:  # no lock, or another process removed it first
        pass
    return False


#: Builds not used for this long are deleted when another build is loaded.
STALE_AFTER_S = 30 * 24 * 3600


def prune_stale_builds(current: Path, stale_after_s: float = STALE_AFTER_S) -> list[Path]:
    """Mark ``current`` as used now and delete its sibling builds not used for
    ``stale_after_s`` (older sources, torch versions or CPU kinds); returns what was deleted.
    Best effort: a folder another process is using or cannot be removed is left alone."""
    import shutil
    import time

    removed = []
    try:
        os.utime(current)
        cutoff = time.time() - stale_after_s
        for other in current.parent.iterdir():
            if other != current and other.is_dir() and other.stat().st_mtime < cutoff \
                    and not (other / "lock").exists():
                shutil.rmtree(other, ignore_errors=True)
                removed.append(other)
    except OSError:
        pass
    return removed
