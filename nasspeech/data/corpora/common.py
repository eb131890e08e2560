"""Helpers every loader shares: reading a label file as UTF-8 text and keeping each clip once."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nasspeech.data.items import CorpusError, Item
from nasspeech.data.report import LoadReport

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


def audio_files(folder: Path, recursive: bool = False) -> list[Path]:
    """The .wav / .flac / .ogg files in ``folder`` (and below it with ``recursive``), sorted."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())


def read_text(path: str | Path, what: str = "file") -> str:
    """The UTF-8 text of ``path`` (a BOM is dropped); :class:`CorpusError` naming the file,
    line and byte when it is not UTF-8 (e.g. a manifest saved as latin-1)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise CorpusError(f"{path}:{line}: {what} is not UTF-8 text (byte 0x{data[exc.start]:02x}"
                          "); re-save it as UTF-8") from None


def unique_items(entries: Sequence[tuple[str, Item]], report: LoadReport) -> list[Item]:
    """The items of ``(where, item)`` entries, each audio file once.

    A file listed again with the same label is a duplicate: dropped and counted. A file listed
    with different labels is ambiguous: every entry of it is skipped (``conflicting labels``)
    and counted, naming where each label came from.
    """
    listed: dict[str, list[tuple[str, str]]] = {}
    for where, item in entries:
        listed.setdefault(item.path, []).append((where, item.label))
    items: list[Item] = []
    seen: set[str] = set()
    for where, item in entries:
        sources = listed[item.path]
        if len({label for _, label in sources}) > 1:
            report.skip(where, "conflicting labels: " + ", ".join(
                f"{label} ({w})" for w, label in sources))
        elif item.path in seen:
            report.duplicates += 1
            report.skip(where, f"duplicate: same as {sources[0][0]}")
        else:
            seen.add(item.path)
            items.append(item)
    return items
