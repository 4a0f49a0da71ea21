"""The overlap rule: smaller mask wins, min area, order independence, full coverage."""

import itertools

import numpy as np
import pytest

from semcontrib.segmentation.partition import masks_to_partition


def _masks(seed, n=6, shape=(40, 50)):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        m = np.zeros(shape, bool)
        r0, c0 = rng.integers(0, shape[0] - 5), rng.integers(0, shape[1] - 5)
        m[r0:r0 + rng.integers(3, 30), c0:c0 + rng.integers(3, 30)] = True
        out.append(m)
    out.append(out[0].copy())  # an exact duplicate with another label
    return out


def test_smaller_mask_wins():
    big = np.ones((10, 10), bool)
    small = np.zeros((10, 10), bool)
    small[2:4, 2:4] = True
    labels, owner = masks_to_partition([small, big], [7, 3])
    assert (labels[2:4, 2:4] == 7).all() and (labels[small == 0] == 3).all()
    assert owner[0, 0] == 1


def test_min_area_and_unassigned():
    a = np.zeros((5, 5), bool)
    a[0, 0] = True
    b = np.zeros((5, 5), bool)
    b[2:, 2:] = True
    labels, _ = masks_to_partition([a, b], [0, 1], min_area=2)
    assert labels[0, 0] == -1 and (labels[2:, 2:] == 1).all() and (labels[:2] == -1).all()


@pytest.mark.parametrize("seed", range(3))
def test_order_independent(seed):
    masks = _masks(seed)
    labels = list(range(len(masks)))
    ref, _ = masks_to_partition(masks, labels, min_area=10)
    rng = np.random.default_rng(seed)
    for _ in range(10):
        perm = rng.permutation(len(masks))
        got, _ = masks_to_partition([masks[i] for i in perm], [labels[i] for i in perm], min_area=10)
        assert np.array_equal(got, ref)


def test_order_independent_all_permutations_small():
    masks = _masks(9, n=3)
    ref, _ = masks_to_partition(masks, [0, 1, 2, 3], min_area=0)
    for perm in itertools.permutations(range(4)):
        got, _ = masks_to_partition([masks[i] for i in perm], [[0, 1, 2, 3][i] for i in perm])
        assert np.array_equal(got, ref)


@pytest.mark.parametrize("seed", range(3))
def test_partition_covers_each_pixel_once(seed):
    masks = _masks(seed)
    labels, owner = masks_to_partition(masks, None, min_area=0)
    union = np.any(masks, axis=0)
    assert ((owner >= 0) == union).all()
    for i, m in enumerate(masks):
        assert (m[owner == i]).all()  # a pixel only goes to a mask that covers it
    assert labels.dtype == np.int32


def test_bad_input():
    with pytest.raises(ValueError, match="labels"):
        masks_to_partition([np.ones((2, 2), bool)], [0, 1])
    with pytest.raises(ValueError, match="shape"):
        masks_to_partition([np.ones((2, 2), bool), np.ones((3, 2), bool)])
    with pytest.raises(ValueError, match="shape is required"):
        masks_to_partition([])
    assert (masks_to_partition([], shape=(2, 3))[0] == -1).all()
