"""On-disk feature cache: one raw float32 file per (file identity, feature config), written
atomically.

Layout: ``<cache_dir>/features/<config key>/<k[:2]>/<k>.f32`` where ``k`` hashes the absolute
path, size and ``mtime_ns`` of the audio file; ``<k>.skip`` holds the reason of a skipped clip;
``<config key>/config.json`` records the parameters. Changing a parameter changes the config
key; touching or editing a file changes its ``k``; either way only that part is recomputed.
Entries are raw little-endian float32 of the config's ``n_mfcc x frames`` shape (no header to
parse, so a warm read costs one ``open``); an entry of the wrong size is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from nasspeech.data.config import FeatureConfig


def file_key(path: str | Path) -> str:
    """Identity of an audio file: hash of its absolute path, size and mtime_ns.

    Raises OSError when the file cannot be stat-ed.
    """
    p = os.path.abspath(path)
    st = os.stat(p)
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def atomic_write(path: str | Path, data: bytes) -> None:
    """Write ``data`` to a temp file in the same folder, then rename it onto ``path``."""
    folder = os.path.dirname(os.fspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FeatureCache:
    """The cache folder of one feature config."""

    def __init__(self, cache_dir: str | Path, config: FeatureConfig) -> None:
        self.dir = os.path.join(os.fspath(cache_dir), "features", config.key())
        self.shape = (config.n_mfcc, config.frames)
        self._bytes = 4 * config.n_mfcc * config.frames
        stamp = os.path.join(self.dir, "config.json")
        if not os.path.exists(stamp):
            atomic_write(stamp, json.dumps(config.model_dump(), indent=2).encode())

    def _path(self, key: str, suffix: str) -> str:
        return os.path.join(self.dir, key[:2], key + suffix)

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached array, the cached skip reason (str), or None on a miss."""
        path = self._path(key, ".f32")
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except FileNotFoundError:
            try:
                with open(self._path(key, ".skip"), encoding="utf-8") as fh:
                    return fh.read()
            except FileNotFoundError:
                return None
        if len(data) != self._bytes:  # torn by something other than our atomic writes
            Path(path).unlink(missing_ok=True)
            return None
        return np.frombuffer(data, dtype="<f4").reshape(self.shape)

    def put(self, key: str, value: np.ndarray | str) -> None:
        """Store features (``n_mfcc x frames``) or a skip reason, atomically."""
        if isinstance(value, str):
            atomic_write(self._path(key, ".skip"), value.encode())
            return
        if value.shape != self.shape:
            raise ValueError(f"features of shape {value.shape}, cache expects {self.shape}")
        atomic_write(self._path(key, ".f32"), np.ascontiguousarray(value, dtype="<f4").tobytes())
