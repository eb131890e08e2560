"""CREMA-D: ``AudioWAV/1001_DFA_ANG_XX.wav`` = actor 1001, sentence DFA, emotion ANG,
level XX; actor genders from ``VideoDemographics.csv`` (``ActorID``, ``Sex``) when present.

Emotions: ANG anger, DIS disgust, FEA fear, HAP happy, NEU neutral, SAD sad. Levels: LO low,
MD medium, HI high, XX unspecified.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from nasspeech.data.corpora.common import audio_files, read_text
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label, gender_of
from nasspeech.data.report import LoadReport

NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")
EMOTIONS = {"ANG": "anger", "DIS": "disgust", "FEA": "fear", "HAP": "happy", "NEU": "neutral",
            "SAD": "sad"}
CODES = {"ANG": "anger", "HAP": "happiness", "SAD": "sadness", "NEU": "neutral"}
LEVELS = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}


def _genders(path: Path) -> dict[str, str]:
    """``{actor: gender}`` of ``VideoDemographics.csv``; empty when the file is absent."""
    if not path.is_file():
        return {}
    reader = csv.DictReader(io.StringIO(read_text(path, "the demographics file"), newline=""))
    if not {"ActorID", "Sex"} <= set(reader.fieldnames or []):
        raise CorpusError(f"{path}: missing column(s) ActorID, Sex")
    return {row["ActorID"].strip(): gender_of(row["Sex"] or "", f"{path}:{line}: column Sex")
            for line, row in enumerate(reader, start=2)}


def load_crema_d(root: str | Path, label_map: dict[str, str] | None = None,
                 strong_intensity: bool = True) -> tuple[list[Item], LoadReport]:
    """Items of CREMA-D from ``root/AudioWAV`` (anger, happiness, sadness, neutral; disgust
    and fear only through ``label_map``, keyed by code or name, e.g. ``{"DIS": "anger"}``).

    ``strong_intensity=False`` drops level-HI clips. Speaker = the actor id, gender from
    ``root/VideoDemographics.csv`` if present, no session. Unused emotions, dropped levels
    and names not of the ``1001_DFA_ANG_XX`` form are skipped and counted.
    """
    root = Path(root)
    folder = root / "AudioWAV"
    if not folder.is_dir():
        raise CorpusError(f"{root}: no AudioWAV/ folder (is this the CREMA-D root?)")
    check_label_map(label_map)
    genders = _genders(root / "VideoDemographics.csv")
    report = LoadReport("crema_d", str(root))
    items: list[Item] = []
    for path in audio_files(folder):
        m = NAME.match(path.stem)
        if m is None or m[3] not in EMOTIONS or m[4] not in LEVELS:
            report.skip(path.name, "bad name: expected AAAA_SSS_EEE_LL, e.g. 1001_DFA_ANG_XX")
            continue
        actor, sentence, code, level = m.groups()
        if level == "HI" and not strong_intensity:
            report.skip(path.name, "strong intensity: strong_intensity is off")
            continue
        label = corpus_label(code, CODES, label_map, name=EMOTIONS[code])
        if label is None:
            report.skip(path.name, f"unused label: {EMOTIONS[code]}")
            continue
        meta = {"corpus": "crema_d", "raw_label": code, "sentence": sentence,
                "intensity": LEVELS[level]}
        if genders.get(actor):
            meta["gender"] = genders[actor]
        items.append(Item(str(path.resolve()), label, actor, "", meta))
    return items, report.finish(items)
