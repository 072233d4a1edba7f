"""Which splits share a cache entry: train and val of every split seed find the same union."""

import numpy as np

from pipeline.cache_groups import cache_groups

DOCS = ["oil rose", "crude fell", "oil rose", "wheat crop", "corn harvest", "profit up", "net rose"]  # one duplicate


def _carve(seed: int) -> dict[str, list[str]]:
    held = np.random.default_rng(seed).choice(len(DOCS), size=2, replace=False)
    return {"train": [d for i, d in enumerate(DOCS) if i not in held], "val": [DOCS[i] for i in held],
            "test": ["grain exports", "oil rose"]}


def test_train_and_val_of_every_split_seed_share_one_sorted_union():
    first, second = cache_groups(_carve(0)), cache_groups(_carve(1))
    assert _carve(0)["val"] != _carve(1)["val"]
    assert first[0].texts == second[0].texts == sorted(set(DOCS)) and first[0].name == "train+val"
    for splits, groups in ((_carve(0), first), (_carve(1), second)):
        for split in ("train", "val"):
            assert [groups[0].texts[row] for row in groups[0].rows[split]] == splits[split]


def test_any_other_split_keeps_its_own_texts_in_order():
    groups = cache_groups(_carve(0))
    assert [g.name for g in groups] == ["train+val", "test"]
    assert groups[1].texts == ["grain exports", "oil rose"] and groups[1].rows["test"].tolist() == [0, 1]
    assert [g.name for g in cache_groups({"test": ["a"], "val": ["b"]})] == ["test", "val"]
