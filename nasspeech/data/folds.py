"""Speaker-independent k-fold CV with a seeded, class-stratified search/train split per fold.

Groups (speakers or sessions) are sorted, shuffled with ``seed`` and assigned greedily, largest
first, to the fold with the fewest items, so folds are balanced and deterministic; with
``balance_gender`` each gender's groups are dealt out in turn first, so every test fold holds
both genders. In each fold
the items outside the test groups are split per class: ``search_fraction`` (default 0.7) go to
the *search* set, the rest to the *train* set (emoDARTS protocol).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasspeech.data.config import DEFAULT_GROUP_BY, DataConfig
from nasspeech.data.items import CLASSES, Item
from nasspeech.io import atomic_write


class FoldError(ValueError):
    """Folds that cannot be made as asked; the message names the group / file."""


@dataclass
class Fold:
    """One fold: sorted item indices of its test, search and train parts."""

    index: int
    test: list[int]
    search: list[int]
    train: list[int]
    test_groups: list[str]
    group_by: str = "speaker"
    labels: list[str] = field(default_factory=list, repr=False)
    groups: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """Groups and per-class counts of each part."""
        parts: dict[str, Any] = {}
        for name in ("search", "train", "test"):
            idx = getattr(self, name)
            counts = Counter(self.labels[i] for i in idx)
            parts[name] = {"n": len(idx), "groups": sorted({self.groups[i] for i in idx}),
                           "classes": {c: counts.get(c, 0) for c in CLASSES}}
        return {"fold": self.index, "group_by": self.group_by, "test_groups": self.test_groups,
                "parts": parts}

    def summary_text(self) -> str:
        """The summary as a few lines of text (printed by the commands)."""
        s = self.summary()
        def groups(n: int) -> str:
            return f"{n} {self.group_by}{'' if n == 1 else 's'}"

        lines = [f"fold {self.index}: test {self.group_by}s {', '.join(self.test_groups)}"]
        for name, part in s["parts"].items():
            classes = " ".join(f"{c}={n}" for c, n in part["classes"].items())
            lines.append(f"  {name:6s} {part['n']:5d} clips, {groups(len(part['groups']))}  "
                         f"[{classes}]")
        return "\n".join(lines)


def read_fold_file(path: str | Path, groups: Sequence[str], n_folds: int) -> dict[str, int]:
    """``{group: fold}`` from JSON ``{group: fold_index}`` or ``{fold_index: [groups]}``.

    A group given two folds, a group of the data missing from the file, an unknown group or a
    fold index out of range is an error naming it.
    """
    from nasspeech.space.loading import ConfigFileError, parse_mapping, read_text

    try:  # the one config-file reader: refuses duplicate keys, oversized and binary files
        raw = parse_mapping(read_text(path, "fold file"), f"fold file {path}", "JSON")
    except FileNotFoundError:
        raise FoldError(f"fold file {path}: not found") from None
    except (OSError, ConfigFileError) as exc:
        raise FoldError(str(exc) if "fold file" in str(exc) else f"fold file {path}: {exc}"
                        ) from None
    assign: dict[str, int] = {}
    lists = all(isinstance(v, list) for v in raw.values())
    pairs = ([(g, k) for k, gs in raw.items() for g in gs] if lists
             else [(g, k) for g, k in raw.items()])
    for group, fold in pairs:
        group = str(group)
        try:
            fold = int(fold)
        except (TypeError, ValueError):
            raise FoldError(f"fold file {path}: {group!r} has fold {fold!r}, not an int") from None
        if group in assign and assign[group] != fold:
            raise FoldError(f"fold file {path}: {group!r} is in two folds "
                            f"({assign[group]} and {fold})")
        if not 0 <= fold < n_folds:
            raise FoldError(f"fold file {path}: {group!r} has fold {fold}, outside 0..{n_folds - 1}")
        assign[group] = fold
    known = set(groups)
    for group in sorted(known - set(assign)):
        raise FoldError(f"fold file {path}: group {group!r} of the data has no fold")
    for group in sorted(set(assign) - known):
        raise FoldError(f"fold file {path}: group {group!r} is not in the data")
    for k in range(n_folds):
        if k not in assign.values():
            raise FoldError(f"fold file {path}: fold {k} has no group")
    return assign


def assign_groups(groups: Sequence[str], n_folds: int, seed: int,
                  strata: dict[str, str] | None = None) -> dict[str, int]:
    """Balanced, seeded group -> fold assignment (largest groups first, to the lightest fold).

    With ``strata`` (group -> stratum, e.g. gender) the groups of each stratum are dealt out
    in turn, each to the fold with the fewest groups of that stratum (then the lightest).
    """
    sizes = Counter(groups)
    names = sorted(sizes)
    if len(names) < n_folds:
        raise FoldError(f"{len(names)} groups ({', '.join(names)}) cannot make {n_folds} "
                        "speaker-independent folds; lower data.folds or group by speaker")
    order = [names[i] for i in np.random.default_rng(seed).permutation(len(names))]
    order.sort(key=lambda g: -sizes[g])  # stable: ties keep the shuffled order
    if strata is not None:
        order.sort(key=lambda g: strata[g])  # stable: by stratum, then as above
    load = [0] * n_folds
    count = [0] * n_folds
    per_stratum: Counter[tuple[str, int]] = Counter()
    assign: dict[str, int] = {}
    for g in order:
        stratum = strata[g] if strata is not None else ""
        k = min(range(n_folds), key=lambda j: (per_stratum[stratum, j], load[j], count[j], j))
        assign[g] = k
        load[k] += sizes[g]
        count[k] += 1
        if strata is not None:
            per_stratum[stratum, k] += 1
    return assign


def gender_strata(items: Sequence[Item], groups: Sequence[str], n_folds: int,
                  group_by: str) -> dict[str, str]:
    """group -> its gender (``female``, ``male``, or ``female+male`` for a mixed session).

    :class:`FoldError` when an item has no gender (naming its group) or a gender has too few
    groups to give every fold one.
    """
    genders: dict[str, set[str]] = {}
    for item, group in zip(items, groups):
        if not item.gender:
            raise FoldError(f"balance_gender: {group_by} {group!r} has no gender ({item.path}); "
                            "the corpus (or a manifest gender column) must give it")
        genders.setdefault(group, set()).add(item.gender)
    strata = {g: "+".join(sorted(s)) for g, s in genders.items()}
    for gender in sorted(set().union(*genders.values())):
        n = sum(gender in s for s in genders.values())
        if n < n_folds:
            raise FoldError(f"balance_gender: {n} {gender} {group_by}(s) cannot put one in each "
                            f"of {n_folds} folds; lower data.folds")
    return strata


def make_folds(items: Sequence[Item], n_folds: int = 5, group_by: str | None = "speaker",
               search_fraction: float = 0.7, seed: int = 0,
               fold_file: str | Path | None = None, balance_gender: bool = False) -> list[Fold]:
    """Speaker- (or session-) independent folds of ``items``; ``group_by=None`` uses the corpus
    default (session for IEMOCAP / MSP-IMPROV, speaker otherwise). ``balance_gender`` puts
    groups of each gender in every test fold (ignored with a ``fold_file``, which decides)."""
    if not items:
        raise FoldError("no items to split into folds")
    if not 0 < search_fraction < 1:
        raise FoldError(f"search_fraction must be in (0, 1), not {search_fraction}")
    if group_by is None:
        group_by = DEFAULT_GROUP_BY.get(items[0].meta.get("corpus", ""), "speaker")
    groups = [it.group(group_by) for it in items]
    labels = [it.label for it in items]
    if fold_file is not None:
        assign = read_fold_file(fold_file, groups, n_folds)
    else:
        strata = gender_strata(items, groups, n_folds, group_by) if balance_gender else None
        assign = assign_groups(groups, n_folds, seed, strata)
    folds = []
    for k in range(n_folds):
        test = [i for i, g in enumerate(groups) if assign[g] == k]
        rest = [i for i, g in enumerate(groups) if assign[g] != k]
        rng = np.random.default_rng([seed, k])
        search: list[int] = []
        for c in sorted({labels[i] for i in rest}):
            idx = np.array([i for i in rest if labels[i] == c])
            idx = idx[rng.permutation(len(idx))]
            search.extend(int(i) for i in idx[: round(search_fraction * len(idx))])
        search_set = set(search)
        train = [i for i in rest if i not in search_set]
        folds.append(Fold(k, test, sorted(search), train,
                          sorted({groups[i] for i in test}), group_by, labels, groups))
    return folds


def folds_for(items: Sequence[Item], config: DataConfig) -> list[Fold]:
    """:func:`make_folds` with the fold settings of a :class:`DataConfig` (``fold_file`` and
    ``balance_gender`` included; ``group_by`` defaults to the corpus's grouping)."""
    return make_folds(items, config.folds, config.resolved_group_by(), config.search_fraction,
                      config.seed, config.fold_file, config.balance_gender)


def save_folds(folds: Sequence[Fold], path: str | Path) -> Path:
    """Write the folds (indices and summaries) as JSON, atomically."""
    data = [{"index": f.index, "test_groups": f.test_groups, "test": f.test,
             "search": f.search, "train": f.train, "summary": f.summary()} for f in folds]
    return atomic_write(path, json.dumps(data, indent=1))
