"""A seeded train / validation / test split of a :class:`~semcontrib.training.labels.LabelledSet`,
stratified on the joint labels where possible (else on one task, else random), by group on request."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from semcontrib.training.labels import LabelledSet

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Indices into a :class:`LabelledSet` (int64 arrays, disjoint, sorted).

    ``method`` says how it was stratified: ``"stratified:joint"`` (all tasks' labels together),
    ``"stratified:<task>"`` (one task's labels) or ``"random"``; ``note`` says why.
    """

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    method: str
    seed: int
    note: str = ""

    def to_dict(self, image_ids: Sequence[str] | None = None) -> dict[str, Any]:
        d: dict[str, Any] = {"method": self.method, "seed": self.seed, "note": self.note,
                             "n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test)}
        if image_ids is not None:
            d["val_ids"] = [image_ids[i] for i in self.val]
            d["test_ids"] = [image_ids[i] for i in self.test]
        return d


def _allocate(sizes: Sequence[int], total: int) -> list[int]:
    """Largest-remainder allocation of ``total`` over strata (strata of size 1 get nothing)."""
    n = sum(sizes)
    eligible = [s if s >= 2 else 0 for s in sizes]
    n_el = sum(eligible)
    if n_el == 0 or total == 0:
        return [0] * len(sizes)
    total = min(total, sum(s - 1 for s in eligible if s))
    quotas = [total * s / n_el for s in eligible]
    base = [min(int(math.floor(q)), max(s - 1, 0)) for q, s in zip(quotas, eligible)]
    rest = total - sum(base)
    order = sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - base[i]), i))
    for i in order:
        if rest <= 0:
            break
        if eligible[i] and base[i] < eligible[i] - 1:
            base[i] += 1
            rest -= 1
    del n
    return base


def _stratified_take(pool: np.ndarray, keys: Sequence[str], n_take: int,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    strata: dict[str, list[int]] = {}
    for i, k in zip(pool.tolist(), keys):
        strata.setdefault(k, []).append(i)
    names = sorted(strata)
    alloc = _allocate([len(strata[k]) for k in names], n_take)
    taken: list[int] = []
    for k, a in zip(names, alloc):
        members = np.asarray(strata[k])
        rng.shuffle(members)
        taken.extend(members[:a].tolist())
    take = np.asarray(sorted(taken), dtype=np.int64)
    rest = np.setdiff1d(pool, take)
    return rest, take


def _strata_usable(keys: Sequence[str], n_take: int) -> bool:
    """Stratification is usable when most examples sit in strata that can give one away."""
    c = Counter(keys)
    in_big = sum(n for n in c.values() if n >= 2)
    return in_big >= 0.8 * len(keys) and sum(n - 1 for n in c.values() if n >= 2) >= n_take


def split_examples(labelled: LabelledSet, seed: int = 0, test_fraction: float = 0.1,
                   val_fraction: float = 0.1) -> Split:
    """A seeded train / validation / test split, stratified where possible.

    The test set takes ``test_fraction`` of all examples; the validation set (early stopping)
    takes ``val_fraction`` of the rest. Strata are, in order of preference, the joint labels of
    all tasks, the labels of a single task (the one with most classes first), else none (random).
    A stratum with one example (e.g. a class with a single image) always stays in training.
    With ``labelled.groups``, whole groups are split (fractions count groups), stratified on the
    labels of each group's first image.

    Raises
    ------
    ValueError
        If a fraction is outside [0, 0.5] or there are fewer than 3 examples.
    """
    for name, frac in (("test_fraction", test_fraction), ("val_fraction", val_fraction)):
        if not 0.0 <= frac <= 0.5:
            raise ValueError(f"{name} must be in [0, 0.5], got {frac}")
    if labelled.groups is not None:
        return _split_groups(labelled, seed, test_fraction, val_fraction)
    n = len(labelled)
    if n < 3:
        raise ValueError(f"need at least 3 labelled images to split, got {n}")
    rng = np.random.default_rng(seed)
    all_idx = np.arange(n, dtype=np.int64)
    n_test = int(round(test_fraction * n)) if test_fraction > 0 else 0
    if test_fraction > 0:
        n_test = max(1, n_test)
    n_val = int(round(val_fraction * (n - n_test))) if val_fraction > 0 else 0
    if val_fraction > 0:
        n_val = max(1, n_val)
    tg = labelled.targets
    candidates: list[tuple[str, list[str]]] = [
        ("joint", ["|".join(str(v) for v in row) for row in tg.tolist()])]
    order = sorted(range(len(labelled.tasks)), key=lambda j: (-len(labelled.classes[labelled.tasks[j]]), j))
    for j in order:
        candidates.append((labelled.tasks[j], [str(v) for v in tg[:, j].tolist()]))
    method, keys, note = "random", ["all"] * n, ""
    for name, k in candidates:
        if _strata_usable(k, n_test + n_val):
            method, keys = f"stratified:{name}", k
            break
    if method == "random":
        note = "every stratification leaves too many classes with a single example; random split"
    elif method != "stratified:joint":
        note = "joint label combinations too rare; stratified on one task"
    if method != "stratified:joint":
        logger.warning("split: %s", note)
    key_of = dict(zip(all_idx.tolist(), keys))
    rest, test = _stratified_take(all_idx, keys, n_test, rng)
    train, val = _stratified_take(rest, [key_of[i] for i in rest.tolist()], n_val, rng)
    return Split(train, val, test, method, seed, note)


def _split_groups(labelled: LabelledSet, seed: int, test_fraction: float, val_fraction: float) -> Split:
    assert labelled.groups is not None
    first: dict[str, int] = {}
    members: dict[str, list[int]] = {}
    for i, g in enumerate(labelled.groups):
        first.setdefault(g, i)
        members.setdefault(g, []).append(i)
    names = sorted(first, key=lambda g: first[g])
    if len(names) < 3:
        raise ValueError(f"need at least 3 groups to split by group, got {len(names)}")
    reps = labelled.subset(np.asarray([first[g] for g in names]))
    inner = split_examples(replace(reps, groups=None), seed, test_fraction, val_fraction)

    def expand(idx: np.ndarray) -> np.ndarray:
        return np.asarray(sorted(i for k in idx.tolist() for i in members[names[k]]), dtype=np.int64)

    note = f"split by group ({len(names)} groups); " + (inner.note or "")
    return Split(expand(inner.train), expand(inner.val), expand(inner.test), f"group+{inner.method}", seed,
                 note.strip().rstrip(";"))
