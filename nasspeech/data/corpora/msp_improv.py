"""MSP-IMPROV: labels from ``Evalution.txt`` (sic), audio found by name anywhere under root.

``Evalution.txt`` has one block per clip whose first line reads
``UTD-IMPROV-S01A-F01-P-FM01.avi; A; A:...; V:...; D:...; N:...;`` (category A/H/S/N, others
O/X unused); the wav is ``MSP-IMPROV-S01A-F01-P-FM01.wav`` (in the release under
``Audio/session1/S01A/P/``). Session ``01`` from ``S01A``, speaker ``F01``.
"""

from __future__ import annotations

import re
from pathlib import Path

from nasspeech.data.corpora.manifest import CorpusError
from nasspeech.data.items import Item
from nasspeech.data.report import LoadReport

LINE = re.compile(r"^(?:UTD|MSP)-IMPROV-(S(\d\d)([A-Z])-([FM]\d\d)-([A-Z])-([A-Z]{2}\d\d))"
                  r"\.\w+;\s*([A-Za-z]+)\s*;")
CODES = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral"}


def load_msp_improv(root: str | Path, label_file: str = "Evalution.txt"
                    ) -> tuple[list[Item], LoadReport]:
    """Items of MSP-IMPROV (4 classes; 6 sessions, 12 actors)."""
    root = Path(root)
    labels = root / label_file
    if not labels.is_file():
        alt = root / "Evaluation.txt"
        if not alt.is_file():
            raise CorpusError(f"{root}: no {label_file} (the MSP-IMPROV label file)")
        labels = alt
    wavs = {p.stem: p for p in root.rglob("*.wav")}
    report = LoadReport("msp_improv", str(root))
    items: list[Item] = []
    for line in labels.read_text(errors="replace").splitlines():
        m = LINE.match(line.strip())
        if not m:
            continue
        ident, session, scenario, speaker, kind, _, code = m.groups()
        name = f"MSP-IMPROV-{ident}"
        if code not in CODES:
            report.skip(name, f"label {code} not used")
            continue
        wav = wavs.get(name)
        if wav is None:
            report.skip(name, f"missing file {name}.wav")
            continue
        items.append(Item(str(wav.resolve()), CODES[code], speaker, session,
                          {"corpus": "msp_improv", "scenario": scenario, "type": kind,
                           "raw_label": code}))
    return items, report.finish(items)
