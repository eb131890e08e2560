"""MSP-Podcast: ``Labels/labels_consensus.csv`` (FileName, EmoClass, SpkrID, Split_Set) and
``Audios/<FileName>``."""

from __future__ import annotations

import csv
from pathlib import Path

from nasspeech.data.corpora.manifest import CorpusError
from nasspeech.data.items import Item
from nasspeech.data.report import LoadReport

CODES = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral"}


def load_msp_podcast(root: str | Path) -> tuple[list[Item], LoadReport]:
    """Items of MSP-Podcast (classes A/H/S/N; other classes and unknown speakers skipped and
    counted; the official split is kept in ``meta["split"]``)."""
    root = Path(root)
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise CorpusError(f"{root}: no Labels/labels_consensus.csv (the MSP-Podcast labels)")
    report = LoadReport("msp_podcast", str(root))
    items: list[Item] = []
    with open(labels, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        need = {"FileName", "EmoClass", "SpkrID"} - set(reader.fieldnames or [])
        if need:
            raise CorpusError(f"{labels}: missing column(s) {sorted(need)}")
        for row in reader:
            name, code = row["FileName"].strip(), row["EmoClass"].strip()
            speaker = row["SpkrID"].strip()
            if code not in CODES:
                report.skip(name, f"label {code} not used")
                continue
            if not speaker or speaker.lower() == "unknown":
                report.skip(name, "unknown speaker")
                continue
            wav = root / "Audios" / name
            if not wav.is_file():
                report.skip(name, f"missing file {wav}")
                continue
            items.append(Item(str(wav.resolve()), CODES[code], speaker, "",
                              {"corpus": "msp_podcast", "split": row.get("Split_Set", ""),
                               "raw_label": code}))
    return items, report.finish(items)
