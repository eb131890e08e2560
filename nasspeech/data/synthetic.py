"""Deterministic synthetic emotional speech: the embedded demo corpus (NOT real speech).

Each clip is a string of voiced, syllable-like sounds: a band-limited sawtooth glottal source
following an F0 contour, a spectral-tilt low-pass, three formant resonators (vowels alternate
per syllable), syllable envelopes with pauses and a little aspiration noise. Emotions differ in
pitch level / range / slope, loudness, speaking rate and spectral tilt; speakers differ in base
pitch, formant scaling, loudness and tilt; every clip draws random jitter, so speaker and
emotion cues overlap (learnable, not trivial).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter
from tqdm.auto import tqdm

from nasspeech.data.config import DemoCorpusConfig
from nasspeech.data.items import CLASSES, CorpusError
from nasspeech.io import atomic_write, atomic_write_with

VERSION = 2  # 2: manifest has a gender column (same audio as 1)

#: Emotion prosody: pitch factor, range (semitones), slope (semitones over the clip),
#: level (dB), syllables per second, tilt low-pass pole (higher = darker).
EMOTIONS: dict[str, dict[str, float]] = {
    "anger": {"pitch": 1.35, "range": 5.0, "slope": 0.0, "level": 0.0, "rate": 5.5, "tilt": 0.35},
    "happiness": {"pitch": 1.30, "range": 5.5, "slope": 4.0, "level": -4.0, "rate": 5.0, "tilt": 0.55},
    "sadness": {"pitch": 0.85, "range": 1.2, "slope": -3.0, "level": -14.0, "rate": 2.6, "tilt": 0.85},
    "neutral": {"pitch": 1.00, "range": 1.8, "slope": 0.0, "level": -8.0, "rate": 3.8, "tilt": 0.7},
}

#: Formants (Hz) of the vowels /a/, /i/, /u/, /e/ for an average adult.
VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240], [530, 1840, 2480]])


def _speaker(rng: np.random.Generator, index: int) -> dict[str, float]:
    female = index % 2 == 1
    return {"f0": (rng.uniform(180, 240) if female else rng.uniform(95, 135)),
                "formant": (rng.uniform(1.08, 1.2) if female else rng.uniform(0.88, 1.0)),
                "level": rng.uniform(-3, 3), "tilt": rng.uniform(-0.08, 0.08),
                "rate": rng.uniform(0.9, 1.1)}


def _resonator(x: np.ndarray, freq: float, bw: float, sr: int) -> np.ndarray:
    r = np.exp(-np.pi * bw / sr)
    theta = 2 * np.pi * min(freq, 0.45 * sr) / sr
    a = [1.0, -2 * r * np.cos(theta), r * r]
    return lfilter([1 - r], a, x)


def synth_clip(emotion: str, speaker: dict[str, float], duration: float, sample_rate: int,
               rng: np.random.Generator) -> np.ndarray:
    """One clip of float32 samples in [-1, 1]."""
    e = EMOTIONS[emotion]
    n = round(duration * sample_rate)
    t = np.arange(n) / sample_rate
    # syllable timing (a few per clip; the loop is over syllables, not samples)
    rate = e["rate"] * speaker["rate"] * np.exp(rng.normal(0, 0.15))
    bounds, pos = [], rng.uniform(0.02, 0.15)
    while pos < duration:
        length = rng.uniform(0.55, 0.85) / rate
        bounds.append((pos, min(pos + length, duration)))
        pos += length + rng.uniform(0.15, 0.45) / rate + (rng.uniform(0.1, 0.3) if rng.random() < 0.15 else 0)
    starts = np.array([b[0] for b in bounds])
    ends = np.array([b[1] for b in bounds])
    syl = np.clip(np.searchsorted(starts, t, side="right") - 1, 0, len(bounds) - 1)
    inside = (t >= starts[syl]) & (t < ends[syl])
    phase_in = np.clip((t - starts[syl]) / np.maximum(ends[syl] - starts[syl], 1e-3), 0, 1)
    env = np.where(inside, np.sin(np.pi * phase_in) ** 0.7, 0.0)
    # F0 contour: level, slow wander, per-syllable accents and the emotion's slope
    f0 = speaker["f0"] * e["pitch"] * np.exp(rng.normal(0, 0.08))
    rng_st = e["range"] * np.exp(rng.normal(0, 0.25))
    accents = rng.uniform(-1, 1, len(bounds))[syl] * np.sin(np.pi * phase_in)
    wander = np.sin(2 * np.pi * rng.uniform(0.5, 1.5) * t + rng.uniform(0, 2 * np.pi))
    slope = (e["slope"] + rng.normal(0, 1.0)) * (t / duration - 0.5)
    f0_t = f0 * 2 ** ((rng_st * (0.6 * accents + 0.4 * wander) + slope) / 12)
    phase = np.cumsum(f0_t) / sample_rate
    source = 2 * (phase % 1.0) - 1  # sawtooth glottal source
    tilt = float(np.clip(e["tilt"] + speaker["tilt"] + rng.normal(0, 0.05), 0.05, 0.95))
    source = lfilter([1 - tilt], [1, -tilt], source)
    aspiration = rng.normal(0, 0.08, n)
    # vowels: filter with each vowel's formants, then pick one per syllable
    vowel_of = rng.integers(0, len(VOWELS), len(bounds))[syl]
    voiced = np.zeros(n)
    scale = speaker["formant"] * np.exp(rng.normal(0, 0.03))
    for v in np.unique(vowel_of):
        x = source + aspiration
        y = sum(_resonator(x, f * scale, 60 + 0.05 * f, sample_rate) * g
                for f, g in zip(VOWELS[v], (1.0, 0.6, 0.3)))
        voiced += np.where(vowel_of == v, y, 0.0)
    signal = voiced * env
    signal /= np.abs(signal).max() + 1e-9
    level_db = e["level"] + speaker["level"] + rng.normal(0, 2.0)
    signal = signal * 0.8 * 10 ** (level_db / 20) + rng.normal(0, 3e-4, n)
    return np.clip(signal, -1, 1).astype(np.float32)


def _params(**kw: object) -> dict[str, object]:
    return dict(version=VERSION, **kw)


def _stamp(path: Path) -> object:
    """The parameters recorded in a stamp file; None when absent or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def generate_demo_corpus(out_dir: str | Path, n_speakers: int = 8, clips_per_emotion: int = 8,
                         duration: float = 2.0, sample_rate: int = 16000, seed: int = 0,
                         progress: bool = False) -> Path:
    """Write the synthetic corpus (16-bit wavs, ``manifest.csv``, ``README.txt``, a stamp).

    Returns the manifest path. Nothing is rewritten when the stamp matches the parameters and
    every file exists. The parameters are checked as a :class:`DemoCorpusConfig`
    (pydantic ``ValidationError`` naming the field); an ``out_dir`` that is a file, or a
    non-empty folder without a demo corpus stamp, is a :class:`CorpusError` (nothing of the
    user's is overwritten).
    """
    DemoCorpusConfig(n_speakers=n_speakers, clips_per_emotion=clips_per_emotion,
                     duration=duration, sample_rate=sample_rate, seed=seed)
    out = Path(out_dir)
    manifest = out / "manifest.csv"
    stamp = out / "stamp.json"
    if out.exists() and not out.is_dir():
        raise CorpusError(f"demo corpus folder {out} exists and is not a folder")
    if out.is_dir() and not stamp.is_file() and any(out.iterdir()):
        raise CorpusError(f"demo corpus folder {out} is not empty and holds no demo corpus "
                          "(no stamp.json); choose a new or empty folder")
    params = _params(n_speakers=n_speakers, clips_per_emotion=clips_per_emotion,
                     duration=duration, sample_rate=sample_rate, seed=seed)
    rows = [(f"spk{s + 1:02d}/{emo}_{k:02d}.wav", emo, f"spk{s + 1:02d}", f"sess{s // 2 + 1}",
             "female" if s % 2 else "male")
            for s in range(n_speakers) for emo in CLASSES for k in range(clips_per_emotion)]
    if (_stamp(stamp) == params and manifest.exists()
            and all((out / r[0]).exists() for r in rows)):
        return manifest
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CorpusError(f"cannot create demo corpus folder {out}: {exc.strerror}") from None
    atomic_write(stamp, json.dumps({"incomplete": params}))  # ours, but not yet complete
    speakers = [_speaker(np.random.default_rng([seed, 1000 + s]), s) for s in range(n_speakers)]
    for rel, emo, spk, _, _ in tqdm(rows, desc="demo corpus", unit="clip", disable=not progress):
        s = int(spk[3:]) - 1
        k = int(rel.rsplit("_", 1)[1][:2])
        rng = np.random.default_rng([seed, s, CLASSES.index(emo), k])
        y = synth_clip(emo, speakers[s], duration, sample_rate, rng)
        atomic_write_with(out / rel, lambda fh, y=y: sf.write(fh, y, sample_rate,
                                                              subtype="PCM_16", format="WAV"))
    table = io.StringIO(newline="")
    writer = csv.writer(table)
    writer.writerow(["path", "label", "speaker", "session", "gender"])
    writer.writerows(rows)
    atomic_write(manifest, table.getvalue())
    atomic_write(out / "README.txt",
                 "SYNTHETIC demo corpus generated by nasspeech.data.synthetic - not real speech."
                 "\nSynthetic voices x 4 emotions with emotion-dependent pitch, loudness, rate "
                 f"and tilt.\nParameters: {json.dumps(params)}\nSee docs/data.md.\n")
    atomic_write(stamp, json.dumps(params))
    return manifest
