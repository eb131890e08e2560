"""IEMOCAP: ``Session{1..5}/dialog/EmoEvaluation/*.txt`` labels, wavs in ``sentences/wav``."""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.common import unique_items
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label
from nasspeech.data.report import LoadReport

LINE = re.compile(r"^\[(\d+\.?\d*) - (\d+\.?\d*)\]\t(\S+)\t(\S+)\t")
#: ``Ses01F_impro01_M003``: session, dialog (everything before the last ``_``), and the
#: gender letter of the utterance's speaker.
UTTERANCE = re.compile(r"^(?P<dialog>(?P<session>Ses\d\d)[FM]_.+)_(?P<gender>[FM])\d+[A-Za-z]*$")
CODES = {"ang": "anger", "hap": "happiness", "sad": "sadness", "neu": "neutral"}


def load_iemocap(root: str | Path, improvised_only: bool = True, merge_excitement: bool = False,
                 label_map: dict[str, str] | None = None) -> tuple[list[Item], LoadReport]:
    """Items of IEMOCAP (ang/hap/sad/neu; improvised dialogues only by default).

    ``merge_excitement`` adds ``exc`` -> happiness; ``label_map`` maps any other code (e.g.
    ``{"fru": "anger"}``). Speaker = session + gender of the utterance's speaker
    (``Ses01F_impro01_M003`` -> ``Ses01M``); session = ``Ses01``. Scripted utterances, unused
    labels, names not of that form and missing wavs are skipped and counted in the report; an
    utterance listed twice is kept once (with two different labels: skipped).
    """
    root = Path(root)
    sessions = sorted(p for p in root.glob("Session[1-5]") if p.is_dir())
    if not sessions:
        raise CorpusError(f"{root}: no Session1..Session5 folders (is this the IEMOCAP root?)")
    check_label_map(label_map)
    codes = dict(CODES, **({"exc": "happiness"} if merge_excitement else {}))
    report = LoadReport("iemocap", str(root))
    entries: list[tuple[str, Item]] = []
    for session in sessions:
        label_files = sorted(p for p in (session / "dialog" / "EmoEvaluation").glob("*.txt")
                             if not p.name.startswith("."))
        for label_file in label_files:
            for line in label_file.read_text(errors="replace").splitlines():
                m = LINE.match(line)
                if not m:
                    continue
                start, end, utt, code = m.groups()
                where = f"{label_file.name}:{utt}"
                if improvised_only and "_impro" not in utt:
                    report.skip(where, "scripted: improvised_only is set")
                    continue
                label = corpus_label(code, codes, label_map)
                if label is None:
                    report.skip(where, f"unused label: {code}")
                    continue
                name = UTTERANCE.match(utt)
                if name is None:
                    report.skip(where, "bad utterance name: expected SesNN[FM]_<dialog>_[FM]NNN")
                    continue
                wav = session / "sentences" / "wav" / name["dialog"] / f"{utt}.wav"
                if not wav.is_file():
                    report.skip(where, f"missing file: {wav}")
                    continue
                entries.append((where, Item(
                    str(wav.resolve()), label, name["session"] + name["gender"], name["session"],
                    {"corpus": "iemocap", "utterance": utt, "raw_label": code,
                     "gender": "female" if name["gender"] == "F" else "male",
                     "start": float(start), "end": float(end)})))
    items = unique_items(entries, report)
    return items, report.finish(items)
