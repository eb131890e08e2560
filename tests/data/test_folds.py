"""Speaker-/session-independent folds with a seeded, class-stratified 70/30 search/train split,
fold summaries, and user-given fold files."""

import json
from collections import Counter

import pytest

from nasspeech.data import CLASSES, DataConfig, FoldError, folds_for, make_folds, save_folds
from nasspeech.data.items import Item


def fake_items(n_speakers: int = 6, per_class: int = 5) -> list[Item]:
    return [Item(f"/x/{s}_{c}_{k}.wav", c, f"spk{s}", f"ses{s // 2}")
            for s in range(n_speakers) for c in CLASSES for k in range(per_class)]


@pytest.mark.parametrize("group_by", ["speaker", "session"])
def test_folds_are_group_independent_and_cover_everything(group_by):
    items = fake_items()
    n_folds = 3
    folds = make_folds(items, n_folds=n_folds, group_by=group_by, search_fraction=0.7, seed=1)
    assert folds == make_folds(items, n_folds, group_by, 0.7, seed=1)  # seeded
    tested = []
    for f in folds:
        parts = [set(f.test), set(f.search), set(f.train)]
        assert sum(map(len, parts)) == len(items)  # every item in exactly one part
        assert set.union(*parts) == set(range(len(items)))
        for attr in {"speaker", group_by}:  # a session holds whole speakers
            test_groups = {getattr(items[i], attr) for i in f.test}
            assert not test_groups & {getattr(items[i], attr) for i in f.search + f.train}
        assert f.test_groups == sorted({items[i].group(group_by) for i in f.test})
        for c in CLASSES:  # stratified 70/30
            s = sum(items[i].label == c for i in f.search)
            t = sum(items[i].label == c for i in f.train)
            assert s == round(0.7 * (s + t))
        tested += f.test
    assert sorted(tested) == list(range(len(items)))  # each item tested exactly once


def test_search_split_is_a_seeded_shuffle_not_index_order():
    items = fake_items(n_speakers=6, per_class=20)
    a = make_folds(items, 3, "speaker", seed=0)[0]
    b = make_folds(items, 3, "speaker", seed=1)[0]
    rest = sorted(a.search + a.train)
    first_70 = {i for c in CLASSES for i in
                [j for j in rest if items[j].label == c][: round(0.7 * 80)]}
    assert set(a.search) != first_70
    c = make_folds(items, 3, "speaker", seed=0)[0]
    assert a.search == c.search and (a.search != b.search or a.test != b.test)


def test_summary_text_dict_and_json(tmp_path):
    items = fake_items(n_speakers=4, per_class=3)
    folds = make_folds(items, n_folds=2, group_by="speaker")
    s = folds[0].summary()
    assert s["parts"]["test"]["groups"] == folds[0].test_groups
    assert sum(s["parts"][p]["n"] for p in ("search", "train", "test")) == len(items)
    assert s["parts"]["search"]["classes"] == dict.fromkeys(CLASSES, 4)  # 70% of 6 per class
    text = folds[0].summary_text()
    assert text.startswith("fold 0: test speakers") and "anger=4" in text
    saved = json.loads(save_folds(folds, tmp_path / "folds.json").read_text())
    assert [f["test"] for f in saved] == [f.test for f in folds]
    assert saved[1]["summary"]["parts"]["train"]["n"] == len(folds[1].train)


def test_too_few_groups_and_bad_fraction_are_errors():
    with pytest.raises(FoldError, match="2 groups .* cannot make 5"):
        make_folds(fake_items(n_speakers=2), n_folds=5)
    with pytest.raises(FoldError, match="search_fraction"):
        make_folds(fake_items(), n_folds=2, search_fraction=1.0)
    with pytest.raises(FoldError, match="no items"):
        make_folds([], n_folds=2)


def test_user_fold_files(tmp_path):
    items = fake_items(n_speakers=4)
    mapping = tmp_path / "mapping.json"
    mapping.write_text(json.dumps({"spk0": 0, "spk1": 0, "spk2": 1, "spk3": 1}))
    folds = make_folds(items, n_folds=2, fold_file=mapping)
    assert folds[0].test_groups == ["spk0", "spk1"] and folds[1].test_groups == ["spk2", "spk3"]
    lists = tmp_path / "lists.json"
    lists.write_text('{"0": ["spk0", "spk1"], "1": ["spk2", "spk3"]}')
    assert make_folds(items, n_folds=2, fold_file=lists) == folds
    config = DataConfig(corpus="manifest", folds=2, group_by="speaker", fold_file=str(lists))
    assert folds_for(items, config) == folds


@pytest.mark.parametrize(("content", "message"), [
    ('{"0": ["spk0", "spk1"], "1": ["spk1", "spk2", "spk3"]}', "'spk1' is in two folds"),
    ('{"spk0": 0, "spk1": 0, "spk1": 1, "spk2": 1, "spk3": 1}', "'spk1' appears twice"),
    ('{"0": ["spk0", "spk1"], "1": ["spk2"]}', "group 'spk3' of the data has no fold"),
    ('{"0": ["spk0", "spk1", "spk9"], "1": ["spk2", "spk3"]}', "'spk9' is not in the data"),
    ('{"spk0": 0, "spk1": 0, "spk2": 5, "spk3": 1}', "'spk2' has fold 5, outside 0..1"),
    ('{"spk0": 0, "spk1": 0, "spk2": 0, "spk3": 0}', "fold 1 has no group"),
    ("[1, 2]", "expected a mapping"),
    ("{not json", "folds.json"),
])
def test_bad_user_fold_file_names_the_culprit(tmp_path, content, message):
    path = tmp_path / "folds.json"
    path.write_text(content)
    with pytest.raises(FoldError, match=message):
        make_folds(fake_items(n_speakers=4), n_folds=2, fold_file=path)


def gendered_items(genders: dict[str, str], per_speaker: int = 8) -> list[Item]:
    return [Item(f"/x/{s}_{k}.wav", CLASSES[k % 4], s, "", {"gender": g})
            for s, g in genders.items() for k in range(per_speaker)]


def test_balance_gender_puts_both_genders_in_every_test_fold():
    """Equal-sized speakers: the plain greedy assignment can deal both women into one fold for
    some seeds; with balance_gender no seed may."""
    items = gendered_items({"f1": "female", "f2": "female", "m1": "male", "m2": "male"})

    def test_genders(folds):
        return [{items[i].gender for i in f.test} for f in folds]

    plain = [test_genders(make_folds(items, 2, "speaker", seed=s)) for s in range(20)]
    assert any(len(g) == 1 for fold_genders in plain for g in fold_genders)  # the test bites
    for seed in range(20):
        folds = make_folds(items, 2, "speaker", seed=seed, balance_gender=True)
        assert test_genders(folds) == [{"female", "male"}] * 2
        assert sorted(i for f in folds for i in f.test) == list(range(len(items)))


def test_balance_gender_ravdess_like_and_from_the_config():
    """24 actors, odd numbers male: every one of 5 folds tests both genders, sizes stay even."""
    actors = {f"actor{n:02d}": "male" if n % 2 else "female" for n in range(1, 25)}
    items = gendered_items(actors)
    config = DataConfig(corpus="manifest", folds=5, balance_gender=True, seed=3)
    folds = folds_for(items, config)
    for f in folds:
        genders = Counter(actors[g] for g in f.test_groups)
        assert genders["female"] >= 2 and genders["male"] >= 2
        assert 4 <= len(f.test_groups) <= 5


def test_balance_gender_needs_genders_and_enough_speakers():
    items = gendered_items({"f1": "female", "f2": "female", "m1": "male", "x": ""})
    with pytest.raises(FoldError, match="speaker 'x' has no gender"):
        make_folds(items, 2, balance_gender=True)
    items = gendered_items({"f1": "female", "f2": "female", "f3": "female", "m1": "male"})
    with pytest.raises(FoldError, match="1 male speaker\\(s\\) cannot put one in each of 2 folds"):
        make_folds(items, 2, balance_gender=True)
