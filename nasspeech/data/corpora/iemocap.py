"""IEMOCAP: ``Session{1..5}/dialog/EmoEvaluation/*.txt`` labels, wavs in ``sentences/wav``."""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.manifest import CorpusError
from nasspeech.data.items import Item
from nasspeech.data.report import LoadReport

LINE = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\t(\S+)\t(\S+)\t")
CODES = {"ang": "anger", "hap": "happiness", "sad": "sadness", "neu": "neutral"}


def load_iemocap(root: str | Path, improvised_only: bool = True, merge_excitement: bool = False
                 ) -> tuple[list[Item], LoadReport]:
    """Items of IEMOCAP (4 classes; improvised dialogues only by default; ``exc`` -> happiness
    only with ``merge_excitement``). Speaker = session + gender of the utterance's speaker
    (``Ses01F_impro01_M003`` -> ``Ses01M``); session = ``Ses01``."""
    root = Path(root)
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise CorpusError(f"{root}: no Session1..Session5 folders (is this the IEMOCAP root?)")
    codes = dict(CODES, **({"exc": "happiness"} if merge_excitement else {}))
    report = LoadReport("iemocap", str(root))
    items: list[Item] = []
    for session in sessions:
        for label_file in sorted((session / "dialog" / "EmoEvaluation").glob("*.txt")):
            for line in label_file.read_text(errors="replace").splitlines():
                m = LINE.match(line)
                if not m:
                    continue
                start, end, utt, code = m.groups()
                where = f"{label_file.name}:{utt}"
                if improvised_only and "_impro" not in utt:
                    report.skip(where, "scripted (improvised_only)")
                    continue
                if code not in codes:
                    report.skip(where, f"label {code} not used")
                    continue
                dialog = utt.rsplit("_", 1)[0]
                wav = session / "sentences" / "wav" / dialog / f"{utt}.wav"
                if not wav.is_file():
                    report.skip(where, f"missing file {wav}")
                    continue
                sess = utt[:5]
                speaker = sess + utt.rsplit("_", 1)[1][0]
                items.append(Item(str(wav.resolve()), codes[code], speaker, sess,
                                  {"corpus": "iemocap", "utterance": utt, "raw_label": code,
                                   "start": float(start), "end": float(end)}))
    return items, report.finish(items)
