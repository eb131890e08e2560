"""Berlin Emo-DB: ``wav/03a01Wa.wav`` = speaker 03, text a01, emotion W, version a.

Emotion letters (German): W anger (Wut), L boredom (Langeweile), E disgust (Ekel), A fear
(Angst), F happiness (Freude), T sadness (Trauer), N neutral. Speakers 03, 10, 11, 12, 15 are
male, 08, 09, 13, 14, 16 female.
"""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.common import audio_files
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label
from nasspeech.data.report import LoadReport

NAME = re.compile(r"^(\d\d)([a-z]\d\d)([A-Z])([a-z]?)$")
EMOTIONS = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
            "T": "sadness", "N": "neutral"}
CODES = {"W": "anger", "F": "happiness", "T": "sadness", "N": "neutral"}
GENDER = {**dict.fromkeys(("03", "10", "11", "12", "15"), "male"),
          **dict.fromkeys(("08", "09", "13", "14", "16"), "female")}


def load_emodb(root: str | Path, label_map: dict[str, str] | None = None
               ) -> tuple[list[Item], LoadReport]:
    """Items of Emo-DB from ``root/wav`` (anger, happiness, sadness, neutral; boredom, disgust
    and fear only through ``label_map``, keyed by letter or English name, e.g.
    ``{"boredom": "neutral"}``).

    Speaker = the two leading digits, gender from the corpus's speaker list, no session.
    Unused emotions and names not of the ``03a01Wa`` form are skipped and counted.
    """
    root = Path(root)
    folder = root / "wav"
    if not folder.is_dir():
        raise CorpusError(f"{root}: no wav/ folder (is this the Emo-DB root?)")
    check_label_map(label_map)
    report = LoadReport("emodb", str(root))
    items: list[Item] = []
    for path in audio_files(folder):
        m = NAME.match(path.stem)
        if m is None or m[3] not in EMOTIONS:
            report.skip(path.name, "bad name: expected SSTTTEv, e.g. 03a01Wa")
            continue
        speaker, text, code, version = m.groups()
        label = corpus_label(code, CODES, label_map, name=EMOTIONS[code])
        if label is None:
            report.skip(path.name, f"unused label: {EMOTIONS[code]}")
            continue
        meta = {"corpus": "emodb", "raw_label": code, "text": text, "version": version}
        if speaker in GENDER:
            meta["gender"] = GENDER[speaker]
        items.append(Item(str(path.resolve()), label, speaker, "", meta))
    return items, report.finish(items)
