"""MSP-IMPROV: labels from ``Evalution.txt`` (sic; ``Evaluation.txt`` also accepted), audio
found by name anywhere under root.

The label file has one block per clip whose first line reads
``UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:...; V:...; D:...; N:...;`` (consensus category
A/H/S/N; O and X are unused) followed by one line per evaluator; the wav is
``MSP-IMPROV-S01A-F01-P-FM01.wav`` (in the release under ``session1/S01A/P/``). In the name,
``S01A`` is target sentence 01 with target emotion A, ``F01`` the speaker (female actor of
session 01), ``P`` the recording type (R read, S/P improvised, T natural interaction).
"""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.common import unique_items
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label
from nasspeech.data.report import LoadReport

LINE = re.compile(r"^(?:UTD|MSP)-IMPROV-(S(\d\d)([A-Z])-([FM](\d\d))-([A-Z])-([A-Z]{2}\d\d))"
                  r"\.\w+;\s*([A-Za-z]+)\s*;")
CODES = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral"}
LABEL_FILES = ("Evalution.txt", "Evaluation.txt")


def load_msp_improv(root: str | Path, label_map: dict[str, str] | None = None,
                    label_file: str | None = None) -> tuple[list[Item], LoadReport]:
    """Items of MSP-IMPROV (A/H/S/N; 6 sessions, 12 actors).

    Speaker = the actor (``F01``), session = the actor's session (``01``), so grouping by
    session leaves one actor pair out; gender from the actor's letter. Other labels and
    missing wavs are skipped and counted; a clip listed twice is kept once (with two different
    labels: skipped).
    """
    root = Path(root)
    names = (label_file,) if label_file else LABEL_FILES
    labels = next((root / n for n in names if (root / n).is_file()), None)
    if labels is None:
        raise CorpusError(f"{root}: no {' or '.join(names)} (the MSP-IMPROV label file)")
    check_label_map(label_map)
    wavs = {p.stem: p for p in root.rglob("*.wav")}
    report = LoadReport("msp_improv", str(root))
    entries: list[tuple[str, Item]] = []
    for number, line in enumerate(labels.read_text(errors="replace").splitlines(), start=1):
        m = LINE.match(line.strip())
        if not m:
            continue
        ident, sentence, target, speaker, session, kind, _, code = m.groups()
        name = f"MSP-IMPROV-{ident}"
        label = corpus_label(code, CODES, label_map)
        if label is None:
            report.skip(name, f"unused label: {code}")
            continue
        wav = wavs.get(name)
        if wav is None:
            report.skip(name, f"missing file: {name}.wav")
            continue
        entries.append((f"{labels.name}:{number}", Item(
            str(wav.resolve()), label, speaker, session,
            {"corpus": "msp_improv", "sentence": sentence, "target": target, "type": kind,
             "raw_label": code, "gender": "female" if speaker[0] == "F" else "male"})))
    items = unique_items(entries, report)
    return items, report.finish(items)
