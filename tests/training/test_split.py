"""The split: stratified, seeded, singletons in training, fallbacks, groups."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.training import (
    read_labels,
    split_examples,
)
from tests.training.helpers import labelled_set, write_images

# --------------------------------------------------------------------------- split


def test_split_is_stratified_seeded_and_keeps_singletons_in_training():
    targets = [[0, 0]] * 30 + [[1, 1]] * 10 + [[0, 2]]  # class 2 of task b: a single example
    ls = labelled_set(targets, {"a": ("x", "y"), "b": ("p", "q", "r")})
    s = split_examples(ls, seed=3)
    again = split_examples(ls, seed=3)
    other = split_examples(ls, seed=4)
    assert s.method == "stratified:joint"
    np.testing.assert_array_equal(s.test, again.test)
    assert not np.array_equal(s.test, other.test)
    assert len(s.test) == 4 and len(s.val) == 4
    assert 40 in s.train  # the single example
    t = ls.targets[s.test, 0]
    assert (t == 0).sum() == 3 and (t == 1).sum() == 1  # 3:1 as in the data
    assert len(set(s.train) | set(s.val) | set(s.test)) == 41


def test_split_falls_back_when_classes_are_too_small():
    rng = np.random.default_rng(0)
    # joint labels almost all unique -> stratify on one task
    targets = [[int(rng.integers(0, 2)), k] for k in range(20)]
    ls = labelled_set(targets, {"a": ("x", "y"), "b": tuple(f"c{k}" for k in range(20))})
    s = split_examples(ls, seed=0)
    assert s.method == "stratified:a" and s.note
    # every task's classes unique -> random
    ls = labelled_set([[k, k] for k in range(10)], {"a": tuple(map(str, range(10))), "b": tuple(map(str, range(10)))})
    s = split_examples(ls, seed=0)
    assert s.method == "random" and "random" in s.note
    assert len(s.test) == 1


def test_split_rejects_bad_fractions():
    ls = labelled_set([[0], [1], [0], [1]], {"a": ("x", "y")})
    with pytest.raises(ValueError, match="test_fraction"):
        split_examples(ls, test_fraction=0.9)
    with pytest.raises(ValueError, match="at least 3"):
        split_examples(labelled_set([[0], [1]], {"a": ("x", "y")}))



def test_group_column_keeps_each_group_on_one_side(tmp_path):
    img = tmp_path / "img"
    names = [f"g{g}_{k}.jpg" for g in range(12) for k in range(3)]
    write_images(img, names)
    rows = [f"{n[:-4]},{'yes' if int(n[1:].split('_')[0]) % 2 else 'no'},scene{n[1:].split('_')[0]}"
            for n in names]
    (tmp_path / "l.csv").write_text("image_id,t,scene\n" + "\n".join(rows) + "\n")
    ls = read_labels(tmp_path / "l.csv", img, group_column="scene")
    assert ls.tasks == ["t"] and ls.groups is not None and len(set(ls.groups)) == 12
    s = split_examples(ls, seed=0)
    assert s.method.startswith("group+") and len(s.test) == 3 and len(s.val) == 3
    side = {}
    for name, idx in (("train", s.train), ("val", s.val), ("test", s.test)):
        for i in idx:
            assert side.setdefault(ls.groups[i], name) == name
    with pytest.raises(ValueError, match="group column"):
        read_labels(tmp_path / "l.csv", img, group_column="nope")
