"""Reports of what a corpus load and a feature extraction kept, skipped and why."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from nasspeech.data.items import CLASSES, Item


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _reasons(reasons: list[str]) -> str:
    counts = Counter(r.split(":", 1)[0] for r in reasons)
    return ", ".join(f"{n} {r}" for r, n in sorted(counts.items()))


@dataclass
class LoadReport:
    """What a corpus loader kept and skipped (``skipped``: (where, reason) pairs)."""

    corpus: str
    source: str = ""
    n_items: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)
    n_speakers: int = 0
    n_sessions: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: int = 0
    warnings: list[str] = field(default_factory=list)

    def finish(self, items: list[Item]) -> LoadReport:
        """Count ``items``; warn about classes with no clip (a one-class corpus cannot train
        a classifier)."""
        self.n_items = len(items)
        counts = Counter(i.label for i in items)
        self.class_counts = {c: counts.get(c, 0) for c in CLASSES}
        self.n_speakers = len({i.speaker for i in items})
        self.n_sessions = len({i.session for i in items if i.session})
        present = [c for c, n in self.class_counts.items() if n]
        missing = [c for c, n in self.class_counts.items() if not n]
        if items and len(present) == 1:
            self.warnings.append(f"only one class ({present[0]}): a classifier cannot learn "
                                 "from it; check label / label_map")
        elif items and missing:
            self.warnings.append(f"no clips of {', '.join(missing)}")
        return self

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append((where, reason))

    def reasons(self) -> str:
        """Skip counts per reason category, e.g. ``2 missing file, 1 unused label``."""
        return _reasons([r for _, r in self.skipped])

    def __str__(self) -> str:
        classes = ", ".join(f"{c} {n}" for c, n in self.class_counts.items())
        sessions = f", {self.n_sessions} sessions" if self.n_sessions else ""
        text = (f"{self.corpus} ({self.source}): {self.n_items} clips, {self.n_speakers} speakers"
                f"{sessions} [{classes}]")
        if self.duplicates:
            text += f"; {self.duplicates} duplicate rows dropped"
        if self.skipped:
            text += f"; {len(self.skipped)} skipped ({self.reasons()})"
            for where, reason in self.skipped[:5]:
                text += f"\n  skipped {where}: {reason}"
            if len(self.skipped) > 5:
                text += f"\n  ... and {len(self.skipped) - 5} more (see LoadReport.skipped)"
        for warning in self.warnings:
            text += f"\n  warning: {warning}"
        return text


@dataclass
class ExtractionReport:
    """Counts of a feature extraction; ``kept`` are the item indices of the returned rows."""

    extracted: int = 0
    from_cache: int = 0
    skipped: list[tuple[int, str, str]] = field(default_factory=list)  # (index, path, reason)
    kept: list[int] = field(default_factory=list)
    seconds: float = 0.0
    corrupt: list[str] = field(default_factory=list)  # cache entries found invalid, recomputed
    cache_errors: list[str] = field(default_factory=list)  # results that could not be cached

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)

    def __str__(self) -> str:
        text = (f"features: {len(self.kept)} clips ({self.extracted} extracted, "
                f"{self.from_cache} from cache), {self.n_skipped} skipped in {self.seconds:.1f} s")
        if self.skipped:
            text += f" ({_reasons([r for _, _, r in self.skipped])})"
            for _, path, reason in self.skipped[:5]:
                text += f"\n  skipped {path}: {reason}"
            if len(self.skipped) > 5:
                text += f"\n  ... and {len(self.skipped) - 5} more (see ExtractionReport.skipped)"
        if self.corrupt:
            text += (f"\n  cache: {_count(len(self.corrupt), 'corrupt entry', 'corrupt entries')}"
                     f" recomputed (first: {self.corrupt[0]})")
        if self.cache_errors:
            text += (f"\n  cache: {_count(len(self.cache_errors), 'result', 'results')} not "
                     f"cached (first: {self.cache_errors[0]})")
        return text
