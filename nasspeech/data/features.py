"""One clip's samples -> a fixed-size ``n_mfcc x frames`` MFCC / log-mel matrix."""

from __future__ import annotations

import warnings
from pathlib import Path

import librosa
import numpy as np

from nasspeech.data.audio import SkipClip, check_samples, load_audio
from nasspeech.data.config import FeatureConfig
from nasspeech.data.threads import one_blas_thread

__all__ = ["SkipClip", "check_features", "compute_features", "file_features", "fix_length",
           "pool_frames"]


def fix_length(y: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad at the end or truncate to ``n`` samples."""
    return y[:n] if y.size >= n else np.pad(y, (0, n - y.size))


def pool_frames(m: np.ndarray, frames: int) -> np.ndarray:
    """Max-pool ``m`` (F x T) along time into ``frames`` contiguous segments.

    With fewer than ``frames`` columns the matrix is padded at the end with each row's minimum.
    """
    t = m.shape[1]
    if t < frames:
        return np.concatenate([m, np.repeat(m.min(axis=1, keepdims=True), frames - t, 1)], 1)
    starts = np.linspace(0, t, frames + 1).astype(int)[:-1]
    return np.maximum.reduceat(m, starts, axis=1)


def compute_features(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """``n_mfcc x frames`` float32 features of mono samples at ``config.sample_rate``.

    Computed with one BLAS thread (:func:`one_blas_thread`), so the result is bit-identical
    in every process and at every thread setting of the caller.
    """
    with one_blas_thread():
        return _features(y, config)


def _features(y: np.ndarray, config: FeatureConfig) -> np.ndarray:
    n = max(1, round(config.duration * config.sample_rate))
    y = fix_length(y, n)
    n_fft = min(config.n_fft, n)  # a window longer than the padded clip is clipped to it
    hop = min(config.hop_length, n_fft)
    n_mels = max(config.n_mels, config.n_mfcc) if config.kind == "mfcc" else config.n_mfcc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty mel filters at tiny n_fft
        mel = librosa.feature.melspectrogram(y=y, sr=config.sample_rate, n_fft=n_fft,
                                             hop_length=hop, n_mels=n_mels)
    logmel = librosa.power_to_db(mel)
    if config.kind == "mfcc":
        m = librosa.feature.mfcc(S=logmel, n_mfcc=config.n_mfcc)
    else:
        m = logmel
    m = pool_frames(m, config.frames)
    if config.normalise == "per_clip":
        m = (m - m.mean()) / (m.std() + 1e-6)
    return m.astype(np.float32)


def check_features(m: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
    """``m`` if every value is finite, else :class:`SkipClip` (``non-finite: ...``; e.g. a
    float WAV whose huge samples overflow the power spectrogram)."""
    if not np.isfinite(m).all():
        peak = f" (sample peak {float(np.abs(y).max()):.3g})" if y is not None and y.size else ""
        raise SkipClip(f"non-finite: the features hold NaN or inf{peak}")
    return m


def file_features(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Features of one file, or :class:`SkipClip` with the reason (unreadable, truncated,
    empty, bad sample rate, non-finite, silent)."""
    y = load_audio(path, config.sample_rate, max_seconds=config.duration)
    check_samples(y, config.silence_peak)
    return check_features(compute_features(y, config), y)
