"""Tiny audio fixtures for the data tests (short synthetic clips written on the fly)."""

import struct
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


def with_header_rate(path: Path, rate: int) -> Path:
    """Overwrite the sample rate in a canonical 44-byte-header WAV (bytes 24..27)."""
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"fmt "
    data[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(data))
    return path


def huge_float_wav(path: Path, peak: float = 1e30) -> Path:
    """A float WAV whose finite samples overflow a float32 power spectrogram."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(16000) / 16000
    sf.write(path, (peak * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000,
             subtype="FLOAT")
    return path


@pytest.fixture
def tone():
    return write_tone


@pytest.fixture
def header_rate():
    return with_header_rate


@pytest.fixture
def huge_wav():
    return huge_float_wav


@pytest.fixture
def small() -> FeatureConfig:
    """A feature config small enough for tests (1 s, 20 MFCCs x 16 frames)."""
    return FeatureConfig(duration=1.0, n_mfcc=20, frames=16, n_fft=512, hop_length=128, n_mels=40)
