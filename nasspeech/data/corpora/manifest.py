"""Generic manifest: a CSV with ``path,label,speaker`` and optional ``session`` / ``gender``
columns."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from nasspeech.data.corpora.common import read_text
from nasspeech.data.items import (
    CLASSES,
    CorpusError,
    Item,
    check_label_map,
    dropped_by_map,
    gender_of,
    map_label,
)
from nasspeech.data.report import LoadReport

__all__ = ["CorpusError", "load_manifest"]


def load_manifest(csv_path: str | Path, label_map: dict[str, str] | None = None,
                  root: str | Path | None = None, on_unknown_label: str = "raise",
                  on_missing_file: str = "raise", corpus: str = "manifest"
                  ) -> tuple[list[Item], LoadReport]:
    """Items of a manifest CSV; relative paths are resolved against ``root`` or the CSV's folder.

    Unknown labels and missing files raise :class:`CorpusError` naming the row, or are skipped
    and counted with ``on_unknown_label="skip"`` / ``on_missing_file="skip"``. Duplicate rows
    (same file, label and speaker) are dropped and counted; the same file with two labels or
    two speakers is an error naming both lines. A ``gender`` column (f/m/female/male) goes to
    ``meta["gender"]``. A file that is not UTF-8 is an error naming the line.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CorpusError(f"manifest {csv_path} does not exist")
    check_label_map(label_map)
    base = Path(root) if root is not None else csv_path.parent
    report = LoadReport(corpus, str(csv_path))
    items: list[Item] = []
    seen: dict[str, tuple[int, str, str]] = {}
    with io.StringIO(read_text(csv_path, "the manifest"), newline="") as fh:
        reader = csv.DictReader(fh)
        missing_cols = {"path", "label", "speaker"} - set(reader.fieldnames or [])
        if missing_cols:
            raise CorpusError(f"{csv_path}: missing column(s) {sorted(missing_cols)}; "
                              "expected path,label,speaker[,session]")
        for line, row in enumerate(reader, start=2):
            where = f"{csv_path}:{line}"
            raw_path, raw_label = (row.get("path") or "").strip(), (row.get("label") or "").strip()
            speaker = (row.get("speaker") or "").strip()
            if not raw_path or not speaker:
                raise CorpusError(f"{where}: empty path or speaker")
            label = map_label(raw_label, label_map)
            if label is None and dropped_by_map(raw_label, label_map):
                report.skip(where, f"dropped by label_map: {raw_label!r}")
                continue
            if label is None:
                if on_unknown_label == "skip":
                    report.skip(where, f"unknown label: {raw_label!r}")
                    continue
                raise CorpusError(f"{where}: unknown label {raw_label!r} (classes {CLASSES}; map "
                                  "it with label_map or use on_unknown_label='skip')")
            path = Path(raw_path)
            path = (path if path.is_absolute() else base / path).resolve()
            if not path.is_file():
                if on_missing_file == "skip":
                    report.skip(where, f"missing file: {path}")
                    continue
                raise CorpusError(f"{where}: audio file {path} does not exist")
            if str(path) in seen:
                first_line, first_label, first_speaker = seen[str(path)]
                if first_label != label:
                    raise CorpusError(f"{where}: {raw_path} is labelled {label!r} but line "
                                      f"{first_line} labels it {first_label!r}")
                if first_speaker != speaker:
                    raise CorpusError(f"{where}: {raw_path} has speaker {speaker!r} but line "
                                      f"{first_line} gives {first_speaker!r}")
                report.duplicates += 1
                report.skip(where, f"duplicate row: same as line {first_line}")
                continue
            seen[str(path)] = (line, label, speaker)
            meta = {"corpus": corpus, "raw_label": raw_label, "row": line}
            gender = gender_of(row.get("gender") or "", f"{where}: column gender")
            if gender:
                meta["gender"] = gender
            items.append(Item(str(path), label, speaker, (row.get("session") or "").strip(), meta))
    return items, report.finish(items)
