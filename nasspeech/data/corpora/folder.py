"""Folder corpus: ``root/<label>/*.wav``, speaker (and optional session) from the file name."""

from __future__ import annotations

from pathlib import Path

from nasspeech.data.corpora.common import audio_files
from nasspeech.data.items import CorpusError, Item, dropped_by_map, map_label, speaker_pattern
from nasspeech.data.report import LoadReport


def load_folder(root: str | Path, speaker_regex: str, label_map: dict[str, str] | None = None,
                on_unknown_label: str = "raise") -> tuple[list[Item], LoadReport]:
    """Items of ``root/<label>/*.wav`` (also .flac/.ogg).

    ``speaker_regex`` is searched in the file name and must have a named group ``speaker``
    (optionally ``session``); a file it does not match is an error naming the file.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusError(f"folder corpus root {root} does not exist")
    pattern = speaker_pattern(speaker_regex)
    report = LoadReport("folder", str(root))
    items: list[Item] = []
    for label_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        label = map_label(label_dir.name, label_map)
        files = audio_files(label_dir)
        if label is None and dropped_by_map(label_dir.name, label_map):
            for f in files:
                report.skip(str(f), f"dropped by label_map: {label_dir.name!r}")
            continue
        if label is None:
            if on_unknown_label == "skip":
                for f in files:
                    report.skip(str(f), f"unknown label: {label_dir.name!r}")
                continue
            raise CorpusError(f"{label_dir}: unknown label folder {label_dir.name!r} (map it "
                              "with label_map or use on_unknown_label='skip')")
        for f in files:
            m = pattern.search(f.name)
            if m is None:
                raise CorpusError(f"{f}: speaker_regex {speaker_regex!r} does not match")
            session = m.groupdict().get("session") or ""
            items.append(Item(str(f.resolve()), label, m.group("speaker"), session,
                              {"corpus": "folder", "raw_label": label_dir.name}))
    if not items and not report.skipped:
        raise CorpusError(f"{root}: no audio files found under <label>/ folders")
    return items, report.finish(items)
