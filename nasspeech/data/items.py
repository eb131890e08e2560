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
