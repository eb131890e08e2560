"""Pydantic configs of the data section: features, the demo corpus and the corpus/fold setup."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from nasspeech.data.items import check_label_map, speaker_pattern

CorpusName = Literal["iemocap", "msp_improv", "msp_podcast", "ravdess", "emodb", "crema_d",
                     "manifest", "folder", "demo"]

#: Sample rates accepted in audio files and configs (Hz); others are not plausible speech.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 768000
#: Longest ``duration`` (s) of a feature window or a demo clip.
MAX_DURATION = 600.0

#: Per-corpus default grouping for speaker-independent folds (``group_by=None``).
DEFAULT_GROUP_BY: dict[str, str] = {"iemocap": "session", "msp_improv": "session"}


class FeatureConfig(BaseModel):
    """How one clip becomes a ``1 x n_mfcc x frames`` float32 tensor.

    Audio is mixed to mono, resampled to ``sample_rate``, zero-padded / truncated to
    ``duration`` seconds, turned into ``n_mfcc`` MFCCs (or ``n_mfcc`` log-mel bands when
    ``kind="logmel"``) and max-pooled along time to ``frames`` frames. ``normalise="per_clip"``
    (default) standardises each clip to zero mean, unit std over the whole matrix.
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    sample_rate: int = Field(16000, ge=MIN_SAMPLE_RATE, le=MAX_SAMPLE_RATE)
    duration: float = Field(8.0, gt=0, le=MAX_DURATION)
    n_mfcc: int = Field(128, gt=0)
    frames: int = Field(128, gt=0)
    n_fft: int = Field(2048, gt=0)
    hop_length: int = Field(256, gt=0)
    n_mels: int = Field(128, gt=0, description="mel bands under the MFCCs (raised to n_mfcc)")
    kind: Literal["mfcc", "logmel"] = "mfcc"
    normalise: Literal["none", "per_clip"] = "per_clip"
    silence_peak: float = Field(1e-4, ge=0, description="peak |x| below this: skipped as silent")
    on_error: Literal["skip", "raise"] = "skip"

    def key(self) -> str:
        """Hash of every parameter that changes the features (not ``on_error``)."""
        payload = self.model_dump(exclude={"on_error"})
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


class DemoCorpusConfig(BaseModel):
    """The embedded synthetic corpus (see :mod:`nasspeech.data.synthetic`)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    n_speakers: int = Field(8, ge=1)
    clips_per_emotion: int = Field(8, ge=1)
    duration: float = Field(2.0, gt=0, le=MAX_DURATION)
    sample_rate: int = Field(16000, ge=8000, le=192000,
                             description="the synthetic formants need at least 8 kHz")
    seed: int = 0
    out_dir: str | None = Field(None, description="default: <cache_dir>/demo-corpus")


class DataConfig(BaseModel):
    """The corpus, its label mapping, the fold protocol, features and cache."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    corpus: CorpusName = "demo"
    root: str | None = None
    manifest: str | None = None
    speaker_regex: str | None = None
    label_map: dict[str, str] | None = None
    on_unknown_label: Literal["raise", "skip"] = "raise"
    on_missing_file: Literal["raise", "skip"] = "raise"
    improvised_only: bool = Field(True, description="IEMOCAP: improvised dialogues only")
    merge_excitement: bool = Field(False, description="IEMOCAP: exc -> happiness")
    splits: list[str] | None = Field(None, description="MSP-Podcast: keep these Split_Set values")
    strong_intensity: bool = Field(True, description="RAVDESS / CREMA-D: keep strong-intensity "
                                   "clips (RAVDESS intensity 02, CREMA-D level HI)")
    folds: int = Field(5, ge=2)
    group_by: Literal["session", "speaker"] | None = None
    balance_gender: bool = Field(False, description="spread each gender's groups over the "
                                 "folds so every test fold holds both (needs item genders)")
    search_fraction: float = Field(0.7, gt=0, lt=1)
    seed: int = 0
    fold_file: str | None = None
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    cache_dir: str = ".nasspeech-cache"
    workers: int = Field(1, ge=1)
    demo: DemoCorpusConfig = Field(default_factory=DemoCorpusConfig)

    @field_validator("speaker_regex")
    @classmethod
    def _valid_regex(cls, value: str | None) -> str | None:
        if value is not None:
            speaker_pattern(value)
        return value

    @field_validator("label_map")
    @classmethod
    def _valid_label_map(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        check_label_map(value)
        return value

    def resolved_group_by(self) -> str:
        """``group_by`` or the corpus default (session for IEMOCAP/MSP-IMPROV, else speaker)."""
        return self.group_by or DEFAULT_GROUP_BY.get(self.corpus, "speaker")

    def demo_dir(self) -> Path:
        return Path(self.demo.out_dir) if self.demo.out_dir else Path(self.cache_dir) / "demo-corpus"
