"""One labelled clip, the four classes, label normalisation and the checks of user-given
label maps and speaker patterns."""

from __future__ import annotations

import re
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

#: ``label_map`` values that drop a label on purpose (counted in the report).
DROP = ("skip", "drop")

#: Spellings of the two genders (case-insensitive) in manifests and corpus metadata.
GENDERS: dict[str, str] = {"f": "female", "female": "female", "woman": "female",
                           "m": "male", "male": "male", "man": "male"}


class CorpusError(ValueError):
    """A corpus that cannot be loaded as asked; the message names the file / row / field."""


class CorpusWarning(UserWarning):
    """A corpus that loads but is doubtful (e.g. a single class)."""


@dataclass
class Item:
    """A clip: audio path, class name, speaker and session (group) ids, corpus metadata
    (``meta["gender"]``, where the corpus gives it, is ``"female"`` or ``"male"``)."""

    path: str
    label: str
    speaker: str
    session: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def gender(self) -> str:
        """``"female"``, ``"male"`` or ``""`` (unknown)."""
        return str(self.meta.get("gender", ""))

    def group(self, by: str) -> str:
        """The fold group of this item: its ``session`` or its ``speaker``."""
        if by == "session":
            return self.session or self.speaker
        if by == "speaker":
            return self.speaker
        raise ValueError(f"group_by must be 'session' or 'speaker', not {by!r}")


def check_label_map(label_map: dict[str, str] | None) -> dict[str, str | None]:
    """``label_map`` with lower-cased keys and each value resolved to a class name (aliases
    allowed) or None for a deliberate drop (``skip`` / ``drop``).

    Raises :class:`CorpusError` naming the entry whose value is neither (a typo would
    otherwise drop every clip of that label silently).
    """
    out: dict[str, str | None] = {}
    for key, value in (label_map or {}).items():
        target = value.strip().lower() if isinstance(value, str) else None
        if target in DROP:
            out[str(key).strip().lower()] = None
        elif target in ALIASES:
            out[str(key).strip().lower()] = ALIASES[target]
        else:
            raise CorpusError(f"label_map: {key!r} -> {value!r} is not a class "
                              f"({', '.join(CLASSES)}) nor 'skip'")
    return out


def _lookup(keys: tuple[str, ...], label_map: dict[str, str] | None
            ) -> tuple[bool, str | None]:
    """(found, class or None) of the first of ``keys`` in ``label_map``."""
    checked = check_label_map(label_map)
    for key in keys:
        if key.strip().lower() in checked:
            return True, checked[key.strip().lower()]
    return False, None


def map_label(raw: str, label_map: dict[str, str] | None = None) -> str | None:
    """The class name for ``raw`` via ``label_map`` then the built-in aliases; None if unknown
    or dropped by the map."""
    found, label = _lookup((raw,), label_map)
    return label if found else ALIASES.get(raw.strip().lower())


def dropped_by_map(raw: str, label_map: dict[str, str] | None) -> bool:
    """True when ``label_map`` drops ``raw`` on purpose (``{"fru": "skip"}``): such items are
    skipped and counted, never an error."""
    found, label = _lookup((raw,), label_map)
    return found and label is None


def corpus_label(code: str, codes: dict[str, str], label_map: dict[str, str] | None = None,
                 name: str | None = None) -> str | None:
    """The class of a corpus label ``code``: ``label_map`` first (keyed by the code or by the
    emotion's ``name``; ``skip`` drops it), then the corpus defaults ``codes``; None if unused."""
    found, label = _lookup((code,) if name is None else (code, name), label_map)
    return label if found else codes.get(code.strip())


def gender_of(value: str, where: str) -> str:
    """``"female"`` / ``"male"`` for a spelling in :data:`GENDERS`, ``""`` for an empty or
    ``unknown`` value; :class:`CorpusError` naming ``where`` otherwise."""
    if value.strip().lower() in ("", "unknown"):
        return ""
    try:
        return GENDERS[value.strip().lower()]
    except KeyError:
        raise CorpusError(f"{where}: gender {value!r} is not one of "
                          f"{', '.join(GENDERS)} (or empty / unknown)") from None


def speaker_pattern(regex: str) -> re.Pattern[str]:
    """The compiled ``speaker_regex``; :class:`CorpusError` if it is not a valid regular
    expression or has no named group ``speaker``."""
    try:
        pattern = re.compile(regex)
    except re.error as exc:
        raise CorpusError(f"speaker_regex {regex!r} is not a valid regular expression: "
                          f"{exc}") from None
    if "speaker" not in pattern.groupindex:
        raise CorpusError(f"speaker_regex {regex!r} has no named group (?P<speaker>...)")
    return pattern
