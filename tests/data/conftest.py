"""Tiny audio fixtures for the data tests (short synthetic clips written on the fly)."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from nasspeech.data import FeatureConfig


def write_tone(path: Path, sr: int = 16000, seconds: float = 1.0, channels: int = 1,
               amp: float = 0.3, freq: float = 220.0) -> Path:
    """A modulated sine (``channels`` = 2 gives a stereo file) written as a wav."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    y = amp * np.sin(2 * np.pi * freq * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    if channels == 2:
        y = np.stack([y, 0.5 * y], axis=1)
    sf.write(path, y, sr)
    return path


@pytest.fixture
def tone():
    return write_tone


@pytest.fixture
def small() -> FeatureConfig:
    """A feature config small enough for tests (1 s, 20 MFCCs x 16 frames)."""
    return FeatureConfig(duration=1.0, n_mfcc=20, frames=16, n_fft=512, hop_length=128, n_mels=40)
