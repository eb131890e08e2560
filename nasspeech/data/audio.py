"""Reading one audio file as mono samples at a given rate, or a :class:`SkipClip` saying why not."""

from __future__ import annotations

import struct
import warnings
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf

from nasspeech.data.config import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

#: What a skip reason starts with (before the first colon).
SKIP_CATEGORIES = ("unreadable", "truncated", "empty", "bad sample rate", "non-finite", "silent")

#: Audio read past the feature window, so resampling sees the same context at the window's end.
READ_MARGIN_S = 0.5


class SkipClip(Exception):
    """A clip that cannot give features; ``reason`` starts with a category
    (:data:`SKIP_CATEGORIES`), a colon and the details."""

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


def check_rate(sr: float) -> None:
    """Raise :class:`SkipClip` for a sample rate outside MIN_SAMPLE_RATE..MAX_SAMPLE_RATE
    (a header saying 0 Hz, or 1 Hz, which would take seconds to resample to gigabytes)."""
    if not MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE:
        raise SkipClip(f"bad sample rate: the file says {sr:g} Hz (accepted: "
                       f"{MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz)")


def _read(path: Path, max_seconds: float | None) -> tuple[np.ndarray, float]:
    """Mono samples and rate; at most ``max_seconds`` (plus a margin) are read."""
    try:
        with sf.SoundFile(str(path)) as fh:
            sr = fh.samplerate
            check_rate(sr)
            frames = -1 if max_seconds is None else int((max_seconds + READ_MARGIN_S) * sr)
            return fh.read(frames, dtype="float32", always_2d=True).mean(axis=1), sr
    except SkipClip:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure: try librosa, then skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=True, duration=(
                    None if max_seconds is None else max_seconds + READ_MARGIN_S))
        except Exception as exc2:
            raise SkipClip(f"unreadable: {type(exc).__name__}: {exc}".strip()) from exc2
    check_rate(sr)
    return y, sr


def load_audio(path: str | Path, sample_rate: int, max_seconds: float | None = None
               ) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` (channels averaged, any rate resampled).

    Soundfile reads wav/flac/ogg/mp3…; other formats fall back to librosa (audioread). With
    ``max_seconds`` only the start of a long file is read and resampled (plus
    :data:`READ_MARGIN_S`). Raises :class:`SkipClip` for a missing, zero-length,
    unreadable or truncated file and for an implausible sample rate.
    """
    p = Path(path)
    if not p.is_file():
        raise SkipClip(f"unreadable: no such file {p}")
    if p.stat().st_size == 0:
        raise SkipClip("empty: zero-length file")
    truncated = wav_truncation(p)
    if truncated:
        raise SkipClip(truncated)
    y, sr = _read(p, max_seconds)
    if y.size and sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


def check_samples(y: np.ndarray, silence_peak: float) -> None:
    """Raise :class:`SkipClip` for no samples, non-finite samples or a peak below
    ``silence_peak``."""
    if y.size == 0:
        raise SkipClip("empty: no samples")
    if not np.all(np.isfinite(y)):
        raise SkipClip("non-finite: NaN or infinite samples")
    peak = float(np.abs(y).max())
    if peak < silence_peak:
        raise SkipClip(f"silent: peak {peak:.2g} < {silence_peak:g}")
