"""Audio file -> fixed-size MFCC / log-mel matrix (one clip; no cache, no parallelism)."""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import librosa
import numpy as np
import soundfile as sf
import torch
from tqdm.auto import tqdm

from nasspeech.data.cache import FeatureCache, file_key
from nasspeech.data.config import FeatureConfig
from nasspeech.data.items import Item
from nasspeech.data.report import ExtractionReport


class SkipClip(Exception):
    """A clip that cannot give features; ``reason`` starts with unreadable/empty/silent."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Mono float32 samples at ``sample_rate`` (stereo is averaged, any rate resampled)."""
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        y = data.mean(axis=1)
    except Exception as exc:
        if Path(path).stat().st_size == 0:
            raise SkipClip("empty: zero-length file") from exc
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                y, sr = librosa.load(str(path), sr=None, mono=True)
        except Exception as exc2:
            raise SkipClip(f"unreadable: {type(exc).__name__}: {exc}".strip()) from exc2
    if y.size and sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate)
    return np.ascontiguousarray(y, dtype=np.float32)


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
    """``n_mfcc x frames`` float32 features of mono samples at ``config.sample_rate``."""
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


def file_features(path: str | Path, config: FeatureConfig) -> np.ndarray:
    """Features of one file, or :class:`SkipClip` (unreadable / empty / silent)."""
    p = Path(path)
    if not p.is_file():
        raise SkipClip(f"unreadable: no such file {p}")
    if p.stat().st_size == 0:
        raise SkipClip("empty: zero-length file")
    y = load_audio(p, config.sample_rate)
    if y.size == 0:
        raise SkipClip("empty: no samples")
    if not np.all(np.isfinite(y)):
        raise SkipClip("unreadable: non-finite samples")
    peak = float(np.abs(y).max())
    if peak < config.silence_peak:
        raise SkipClip(f"silent: peak {peak:.2g} < {config.silence_peak:g}")
    return compute_features(y, config)


class FeatureError(RuntimeError):
    """A clip that could not give features while ``on_error="raise"``."""


def _work(job: tuple[int, str, str | None, FeatureConfig, str | None]
          ) -> tuple[int, np.ndarray | str]:
    """Extract one clip (in a worker process); caches the result itself, so finished work
    survives a crash of the run."""
    index, path, key, config, cache_dir = job
    try:
        result: np.ndarray | str = file_features(path, config)
    except SkipClip as exc:
        result = exc.reason
    if cache_dir is not None and key is not None:
        FeatureCache(cache_dir, config).put(key, result)
    return index, result


def extract_features(items: Sequence[Item | str | Path], config: FeatureConfig | None = None,
                     cache_dir: str | Path | None = None, workers: int | None = 1,
                     progress: bool = True, on_error: str | None = None
                     ) -> tuple[torch.Tensor, ExtractionReport]:
    """Features of ``items`` as an ``N x 1 x n_mfcc x frames`` float32 tensor.

    Rows follow ``report.kept`` (item indices); skipped clips (unreadable / empty / silent) are
    listed with their reason in ``report.skipped`` and printed, or raise :class:`FeatureError`
    with ``on_error="raise"`` (default: ``config.on_error``). With ``cache_dir`` results are
    cached per file identity and config; ``workers > 1`` uses a process pool.
    """
    config = config or FeatureConfig()
    on_error = on_error or config.on_error
    t0 = time.perf_counter()
    paths = [str(i.path) if isinstance(i, Item) else str(i) for i in items]
    cache = FeatureCache(cache_dir, config) if cache_dir is not None else None
    results: dict[int, np.ndarray | str] = {}
    report = ExtractionReport()
    jobs = []
    for index, path in enumerate(paths):
        key = None
        if cache is not None:
            try:
                key = file_key(path)
            except OSError:
                key = None  # missing file: not cached, reported as unreadable below
            hit = cache.get(key) if key else None
            if hit is not None:
                results[index] = hit
                report.from_cache += 1
                continue
        jobs.append((index, path, key, config, str(cache_dir) if cache_dir is not None else None))
    bar = tqdm(total=len(paths), initial=len(paths) - len(jobs), desc="features", unit="clip",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)
    workers = max(1, int(workers or 1))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            chunk = max(1, min(16, len(jobs) // (4 * workers)))
            for index, result in pool.map(_work, jobs, chunksize=chunk):
                results[index] = result
                bar.update()
    else:
        for job in jobs:
            index, result = _work(job)
            results[index] = result
            bar.update()
    bar.close()
    rows = []
    for index in range(len(paths)):
        result = results[index]
        if isinstance(result, str):
            if on_error == "raise":
                raise FeatureError(f"{paths[index]}: {result}")
            report.skipped.append((index, paths[index], result))
        else:
            report.kept.append(index)
            rows.append(result)
    report.extracted = len(jobs) - sum(1 for j in jobs if isinstance(results[j[0]], str))
    if rows:
        x = torch.from_numpy(np.stack(rows)).unsqueeze(1)
    else:
        x = torch.zeros(0, 1, config.n_mfcc, config.frames)
    report.seconds = time.perf_counter() - t0
    if progress or report.skipped:
        print(report, file=sys.stderr, flush=True)
    return x, report
