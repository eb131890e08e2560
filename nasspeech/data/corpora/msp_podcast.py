"""MSP-Podcast: ``Labels/labels_consensus.csv`` (FileName, EmoClass, SpkrID, Split_Set) and
``Audios/<FileName>``."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

from nasspeech.data.corpora.common import read_text, unique_items
from nasspeech.data.items import CorpusError, Item, check_label_map, corpus_label, gender_of
from nasspeech.data.report import LoadReport

CODES = {"A": "anger", "H": "happiness", "S": "sadness", "N": "neutral"}


def load_msp_podcast(root: str | Path, label_map: dict[str, str] | None = None,
                     splits: Sequence[str] | None = None) -> tuple[list[Item], LoadReport]:
    """Items of MSP-Podcast (EmoClass A/H/S/N; speaker = ``SpkrID``).

    The official split is kept in ``meta["split"]``; ``splits`` keeps only those
    ``Split_Set`` values; a ``Gender`` column goes to ``meta["gender"]``. Other classes,
    unknown speakers, other splits and missing files are skipped and counted in the report; a
    file listed twice is kept once (with two different labels: skipped).
    """
    root = Path(root)
    labels = root / "Labels" / "labels_consensus.csv"
    if not labels.is_file():
        raise CorpusError(f"{root}: no Labels/labels_consensus.csv (the MSP-Podcast labels)")
    check_label_map(label_map)
    keep = {s.lower() for s in splits} if splits else None
    report = LoadReport("msp_podcast", str(root))
    entries: list[tuple[str, Item]] = []
    with io.StringIO(read_text(labels, "the label file"), newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"FileName", "EmoClass", "SpkrID"} - set(reader.fieldnames or [])
        if need:
            raise CorpusError(f"{labels}: missing column(s) {sorted(need)}")
        for line, row in enumerate(reader, start=2):
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
            meta = {"corpus": "msp_podcast", "split": split, "raw_label": code}
            gender = gender_of(row.get("Gender") or "", f"{labels}:{line}: column Gender")
            if gender:
                meta["gender"] = gender
            entries.append((f"{labels.name}:{line}", Item(str(wav.resolve()), label, speaker, "",
                                                           meta)))
    items = unique_items(entries, report)
    return items, report.finish(items)
