"""MSP-Podcast: ``Labels/labels_consensus.csv`` (FileName, EmoClass, SpkrID, Split_Set) and
``Audios/<FileName>``."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from nasspeech.data.corpora.manifest import CorpusError
from nasspeech.data.items import Item, corpus_label
from nasspeech.data.report import LoadReport

CODES = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral"}


def load_msp_podcast(root: str | Path, label_map: dict[str, str] | None = None,
                     splits: Sequence[str] | None = None) -> tuple[list[Item], LoadReport]:
    """Items of MSP-Podcast (EmoClass A/H/S/N; speaker = ``SpkrID``).

    The official split is kept in ``meta["split"]``; ``splits`` keeps only those
    ``Split_Set`` values. Other classes, unknown speakers, other splits and missing files are
    skipped and counted in the report.
    """
    root = Path(root)
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise CorpusError(f"{root}: no Labels/labels_consensus.csv (the MSP-Podcast labels)")
    keep = {s.lower() for s in splits} if splits else None
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
            split = (row.get("Split_Set") or "").strip()
            if keep is not None and split.lower() not in keep:
                report.skip(name, f"other split: {split}")
                continue
            label = corpus_label(code, CODES, label_map)
            if label is None:
                report.skip(name, f"unused label: {code}")
                continue
            if not speaker or speaker.lower() == "unknown":
                report.skip(name, f"unknown speaker: SpkrID {speaker or '(empty)'}")
                continue
            wav = root / "Audios" / name
            if not wav.is_file():
                report.skip(name, f"missing file: {wav}")
                continue
            items.append(Item(str(wav.resolve()), label, speaker, "",
                              {"corpus": "msp_podcast", "split": split, "raw_label": code}))
    return items, report.finish(items)
