"""One labelled clip, the four classes and label normalisation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLASSES: tuple[str, ...] = ("anger", "happiness", "sadness", "neutral")

#: Spellings accepted for the four classes (case-insensitive) when no label_map says otherwise.
ALIASES: dict[str, str] = {
    "anger": "anger", "angry": "anger", "ang": "anger",
    "happiness": "happiness", "happy": "happiness", "hap": "happiness", "joy": "happiness",
    "sadness": "sadness", "sad": "sadness",
    "neutral": "neutral", "neu": "neutral",
}


@dataclass
class Item:
    """A clip: audio path, class name, speaker and session (group) ids, corpus metadata."""

    path: str
    label: str
    speaker: str
    session: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def group(self, by: str) -> str:
        """The fold group of this item: its ``session`` or its ``speaker``."""
        if by == "session":
            return self.session or self.speaker
        if by == "speaker":
            return self.speaker
        raise ValueError(f"group_by must be 'session' or 'speaker', not {by!r}")


def map_label(raw: str, label_map: dict[str, str] | None = None) -> str | None:
    """The class name for ``raw`` via ``label_map`` then the built-in aliases; None if unknown.

    A ``label_map`` value that is not a class name (e.g. ``"skip"``) drops the label.
    """
    key = raw.strip()
    if label_map:
        lowered = {k.strip().lower(): v for k, v in label_map.items()}
        if key.lower() in lowered:
            value = lowered[key.lower()].strip().lower()
            return value if value in CLASSES else None
    return ALIASES.get(key.lower())


def dropped_by_map(raw: str, label_map: dict[str, str] | None) -> bool:
    """True when ``label_map`` maps ``raw`` to something that is not a class (a deliberate
    drop, e.g. ``{"fru": "skip"}``): such items are skipped and counted, never an error."""
    if not label_map:
        return False
    lowered = {k.strip().lower(): v.strip().lower() for k, v in label_map.items()}
    return raw.strip().lower() in lowered and lowered[raw.strip().lower()] not in CLASSES


def corpus_label(code: str, codes: dict[str, str],
                 label_map: dict[str, str] | None = None) -> str | None:
    """The class of a corpus label ``code``: ``label_map`` first (a value that is not a class,
    e.g. ``"skip"``, drops it), then the corpus defaults ``codes``; None if unused."""
    if label_map:
        lowered = {k.strip().lower(): v.strip().lower() for k, v in label_map.items()}
        if code.strip().lower() in lowered:
            value = lowered[code.strip().lower()]
            return value if value in CLASSES else None
    return codes.get(code.strip())
