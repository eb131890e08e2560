"""Reading one audio file as mono samples at a given rate, or a :class:`SkipClip` saying why not."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf


class SkipClip(Exception):
    """A clip that cannot give features; ``reason`` starts with
    ``unreadable`` / ``truncated`` / ``empty`` / ``silent``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def wav_truncation(path: str | Path) -> str | None:
    """For a RIFF/WAVE file whose ``data`` chunk declares more bytes than the file holds, a
    description of the shortfall; None for complete WAVs and for other formats."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            size = Path(path).stat().st_size
            pos = 12
            while pos + 8 <= size:
                fh.seek(pos)
                chunk, length = struct.unpack("<4sI", fh.read(8))
                if chunk == b"data":
                    have = size - pos - 8
                    if length != 0xFFFFFFFF and have < length:  # 0xFFFFFFFF: streamed WAV
                        return f"truncated: data chunk declares {length} bytes, file holds {have}"
                    return None
                pos += 8 + length + (length & 1)
    except (OSError, struct.error):
        return None
    return None


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` (channels averaged, any rate resampled).

    Soundfile reads wav/flac/ogg/mp3…; other formats fall back to librosa (audioread).
    Raises :class:`SkipClip` for a missing, zero-length, unreadable or truncated file.
    """
    p = Path(path)
    if not p.is_file():
        raise SkipClip(f"unreadable: no such file {p}")
    if p.stat().st_size == 0:
        raise SkipClip("empty: zero-length file")
    truncated = wav_truncation(p)
    if truncated:
        raise SkipClip(truncated)
    try:
        data, sr = sf.read(str(p), dtype="float32", always_2d=True)
        y = data.mean(axis=1)
    except Exception as exc:  # noqa: BLE001 - any decoder failure: try librosa, then skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(p), sr=None, mono=True)
        except Exception as exc2:
            raise SkipClip(f"unreadable: {type(exc).__name__}: {exc}".strip()) from exc2
    if y.size and sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def check_samples(y: np.ndarray, silence_peak: float) -> None:
    """Raise :class:`SkipClip` for no samples, non-finite samples or a peak below
    ``silence_peak``."""
    if y.size == 0:
        raise SkipClip("empty: no samples")
    if not np.all(np.isfinite(y)):
        raise SkipClip("unreadable: non-finite samples")
    peak = float(np.abs(y).max())
    if peak < silence_peak:
        raise SkipClip(f"silent: peak {peak:.2g} < {silence_peak:g}")
