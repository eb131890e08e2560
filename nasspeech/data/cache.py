"""On-disk feature cache: one checksummed file per (file identity, feature config), written
atomically.

Layout: ``<cache_dir>/features/<config key>/<k[:2]>/<k>.f32`` where ``k`` hashes the absolute
path, size and ``mtime_ns`` of the audio file; ``<k>.skip`` holds the reason of a skipped clip;
``<config key>/config.json`` records the parameters. Changing a parameter changes the config
key; touching or editing a file changes its ``k``; either way only that part is recomputed.

An entry is the raw little-endian float32 ``n_mfcc x frames`` matrix (or the UTF-8 skip
reason) followed by a 4-byte checksum: the CRC-32 of the payload started from a seed derived
from the config key, ``k`` and the entry kind, so an entry only checks out for its own clip,
config and kind. A warm read is one ``open`` and one CRC (about 10 us for 64 KiB; a
cryptographic hash would cost 5x more: the check is against accidents, not forgery). An entry whose size or digest does not match (torn, random
bytes, NaNs written by something else, another clip's or another config's entry copied in
its place, a skip record not written for this clip) is counted as corrupt, removed and
recomputed; something that is not a file in an entry's place is counted and bypassed.
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from pathlib import Path

import numpy as np

from nasspeech.data.audio import SKIP_CATEGORIES
from nasspeech.data.config import FeatureConfig
from nasspeech.io import atomic_write

DIGEST = 4  # bytes of checksum after each entry's payload


def file_key(path: str | Path) -> str:
    """Identity of an audio file: hash of its absolute path, size and mtime_ns.

    Raises OSError when the file cannot be stat-ed.
    """
    p = os.path.abspath(path)
    st = os.stat(p)
    return hashlib.sha1(f"{p}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()


class FeatureCache:
    """The cache folder of one feature config.

    ``corrupt`` lists the entries found invalid (and recomputed) since the cache was opened.
    Raises OSError when the folder cannot be created.
    """

    def __init__(self, cache_dir: str | Path, config: FeatureConfig) -> None:
        self._config_key = config.key()
        self.dir = os.path.join(os.fspath(cache_dir), "features", self._config_key)
        self.shape = (config.n_mfcc, config.frames)
        self._bytes = 4 * config.n_mfcc * config.frames
        self.corrupt: list[str] = []
        stamp = os.path.join(self.dir, "config.json")
        if not os.path.isfile(stamp):
            atomic_write(stamp, json.dumps(config.model_dump(), indent=2))

    def _path(self, key: str, suffix: str) -> str:
        return os.path.join(self.dir, key[:2], key + suffix)

    def _digest(self, key: str, kind: bytes, payload: bytes) -> bytes:
        """Checksum binding ``payload`` to this config, this clip and the entry kind."""
        seed = hashlib.blake2b(f"{self._config_key}|{key}|".encode() + kind,
                               digest_size=4).digest()
        return zlib.crc32(payload, int.from_bytes(seed, "little")).to_bytes(DIGEST, "little")

    def _read(self, key: str, suffix: str, max_bytes: int) -> bytes | None:
        """The payload of a valid entry; None when absent or corrupt (counted, removed)."""
        path = self._path(key, suffix)
        try:
            with open(path, "rb") as fh:
                data = fh.read(max_bytes + DIGEST + 1)
        except FileNotFoundError:
            return None
        except OSError:  # a directory (or an unreadable file) in the entry's place
            self.corrupt.append(path)
            return None
        payload, digest = data[:-DIGEST], data[-DIGEST:]
        if len(data) > DIGEST and len(payload) <= max_bytes and digest == self._digest(
                key, suffix.encode(), payload):
            return payload
        self.corrupt.append(path)
        Path(path).unlink(missing_ok=True)
        return None

    def get(self, key: str) -> np.ndarray | str | None:
        """The cached array, the cached skip reason (str), or None on a miss (absent or
        corrupt entry)."""
        data = self._read(key, ".f32", self._bytes)
        if data is not None and len(data) == self._bytes:
            return np.frombuffer(data, dtype="<f4").reshape(self.shape)
        reason = self._read(key, ".skip", 4096)
        if reason is not None:
            text = reason.decode("utf-8", errors="replace")
            if text.split(":", 1)[0] in SKIP_CATEGORIES:
                return text
            self.corrupt.append(self._path(key, ".skip"))
        return None

    def put(self, key: str, value: np.ndarray | str) -> None:
        """Store features (``n_mfcc x frames``) or a skip reason, atomically (the other kind
        of entry for ``key``, if any, is removed). Raises OSError when it cannot be written."""
        if isinstance(value, str):
            suffix, other, payload = ".skip", ".f32", value.encode()[:4096]
        else:
            if value.shape != self.shape:
                raise ValueError(f"features of shape {value.shape}, cache expects {self.shape}")
            suffix, other = ".f32", ".skip"
            payload = np.ascontiguousarray(value, dtype="<f4").tobytes()
        atomic_write(self._path(key, suffix),
                     payload + self._digest(key, suffix.encode(), payload))
        other_path = self._path(key, other)
        if os.path.isfile(other_path):
            os.unlink(other_path)
