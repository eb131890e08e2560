"""RAVDESS speech: ``Audio_Speech_Actors_01-24/Actor_NN/03-01-EE-II-SS-RR-AA.wav``.

The seven fields of a name are modality (03 audio-only), vocal channel (01 speech, 02 song),
emotion (01 neutral, 02 calm, 03 happy, 04 sad, 05 angry, 06 fearful, 07 disgust,
08 surprised), intensity (01 normal, 02 strong; neutral has normal only), statement (01, 02),
repetition (01, 02) and actor (01-24; odd numbers male, even female).
"""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.common import audio_files
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label
from nasspeech.data.report import LoadReport

NAME = re.compile(r"^(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)-(\d\d)$")
EMOTIONS = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
            "06": "fearful", "07": "disgust", "08": "surprised"}
CODES = {"01": "neutral", "03": "happiness", "04": "sadness", "05": "anger"}
INTENSITY = {"01": "normal", "02": "strong"}


def load_ravdess(root: str | Path, label_map: dict[str, str] | None = None,
                 strong_intensity: bool = True) -> tuple[list[Item], LoadReport]:
    """Items of RAVDESS speech (vocal channel 01) found anywhere under ``root`` (.wav, also
    .flac / .ogg copies with the same names).

    Neutral, happy, sad and angry are used; calm, fearful, disgust and surprised only through
    ``label_map`` (keyed by name or code, e.g. ``{"calm": "neutral"}``).
    ``strong_intensity=False`` drops intensity-02 clips. Speaker = ``actorNN``, gender from
    the actor number (odd: male), no session. Song clips, unused emotions, dropped
    intensities and names not of the 7-field form are skipped and counted.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"RAVDESS root {root} does not exist")
    check_label_map(label_map)
    report = LoadReport("ravdess", str(root))
    items: list[Item] = []
    for path in audio_files(root, recursive=True):
        where = str(path.relative_to(root))
        m = NAME.match(path.stem)
        if m is None:
            report.skip(where, "bad name: expected MM-VV-EE-II-SS-RR-AA")
            continue
        modality, channel, code, intensity, statement, repetition, actor = m.groups()
        if channel != "01":
            report.skip(where, f"not speech: vocal channel {channel}")
            continue
        if code not in EMOTIONS or intensity not in INTENSITY:
            report.skip(where, f"bad name: emotion {code} / intensity {intensity} unknown")
            continue
        if intensity == "02" and not strong_intensity:
            report.skip(where, "strong intensity: strong_intensity is off")
            continue
        label = corpus_label(code, CODES, label_map, name=EMOTIONS[code])
        if label is None:
            report.skip(where, f"unused label: {EMOTIONS[code]}")
            continue
        items.append(Item(str(path.resolve()), label, f"actor{actor}", "", {
            "corpus": "ravdess", "raw_label": EMOTIONS[code], "gender":
            "male" if int(actor) % 2 else "female", "intensity": INTENSITY[intensity],
            "statement": statement, "repetition": repetition, "modality": modality}))
    if not items and not report.skipped:
        raise CorpusError(f"{root}: no RAVDESS files (MM-VV-EE-II-SS-RR-AA.wav) found")
    return items, report.finish(items)
