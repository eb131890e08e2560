"""On-disk feature cache: one ``.npy`` per (file identity, feature config), written atomically.

Layout: ``<cache_dir>/features/<config key>/<k[:2]>/<k>.npy`` where ``k`` hashes the absolute
path, size and ``mtime_ns`` of the audio file; ``<k>.skip`` holds the reason of a skipped clip;
``<config key>/config.json`` records the parameters. Changing a parameter changes the config
key; touching or editing a file changes its ``k``; either way only that part is recomputed.
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
    """Identity of an audio file: hash of absolute path, size and mtime_ns."""
    p = Path(path).resolve()
    st = p.stat()
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
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
        self.dir = Path(cache_dir) / "features" / config.key()
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = self.dir / "config.json"
        if not stamp.exists():
            _atomic_write(stamp, json.dumps(config.model_dump(), indent=2).encode())

    def _path(self, key: str, suffix: str) -> Path:
        return self.dir / key[:2] / f"{key}{suffix}"

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached array, the cached skip reason (str), or None on a miss."""
        npy = self._path(key, ".npy")
        if npy.exists():
            try:
                return np.load(npy, allow_pickle=False)
            except (OSError, ValueError):
                npy.unlink(missing_ok=True)  # unreadable entry: recompute
                return None
        skip = self._path(key, ".skip")
        if skip.exists():
            return skip.read_text()
        return None

    def put(self, key: str, value: np.ndarray | str) -> None:
        if isinstance(value, str):
            _atomic_write(self._path(key, ".skip"), value.encode())
            return
        import io

        buf = io.BytesIO()
        np.save(buf, value, allow_pickle=False)
        _atomic_write(self._path(key, ".npy"), buf.getvalue())
