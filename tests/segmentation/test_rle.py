"""COCO RLE and Label Studio brush RLE: hand examples and round trips."""

import numpy as np
import pytest

from semcontrib.segmentation.rle import (
    brush_rle_decode,
    brush_rle_encode,
    brush_rle_to_mask,
    coco_rle_decode,
    coco_rle_encode,
    mask_to_brush_rle,
)


def test_coco_uncompressed_hand_example():
    m = np.zeros((2, 3), bool)
    m[1, 1:] = True  # column-major: col0 = [0,0], col1 = [0,1], col2 = [0,1]
    assert coco_rle_encode(m, compressed=False) == {"size": [2, 3], "counts": [3, 1, 1, 1]}
    assert coco_rle_encode(m)["counts"] == "3110"
    assert np.array_equal(coco_rle_decode({"size": [2, 3], "counts": "3110"}), m)


def test_coco_mask_starting_with_ones():
    m = np.ones((2, 2), bool)
    assert coco_rle_encode(m, compressed=False)["counts"] == [0, 4]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("compressed", [True, False])
def test_coco_round_trip(seed, compressed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 60, size=2)
    m = rng.random((h, w)) < rng.random()
    if seed % 2:  # blobs give long runs and negative deltas
        m = np.zeros((h, w), bool)
        m[h // 4: 3 * h // 4, w // 5:] = True
    rle = coco_rle_encode(m, compressed=compressed)
    assert isinstance(rle["counts"], str if compressed else list)
    assert np.array_equal(coco_rle_decode(rle), m)


def test_coco_large_counts_round_trip():
    m = np.zeros((300, 400), bool)
    m[10:290, 100:399] = True
    m[150, 5] = True
    assert np.array_equal(coco_rle_decode(coco_rle_encode(m)), m)


def test_coco_bad_counts():
    with pytest.raises(ValueError, match="sum"):
        coco_rle_decode({"size": [2, 2], "counts": [1, 1]})
    with pytest.raises(ValueError, match="size"):
        coco_rle_decode({"counts": [4]})


def test_brush_literal_chunk_hand_stream():
    # num=3, word 8 bits, sizes 3,4,8,16; one literal chunk of 3 words: 7, 255, 0
    bits = format(3, "032b") + format(7, "05b") + "".join(format(s - 1, "04b") for s in (3, 4, 8, 16))
    bits += "0" + "00" + format(2, "03b") + format(7, "08b") + format(255, "08b") + format(0, "08b")
    bits += "0" * (-len(bits) % 8)
    stream = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    assert brush_rle_decode(stream).tolist() == [7, 255, 0]


@pytest.mark.parametrize("seed", range(4))
def test_brush_round_trip(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 50, size=2)
    mask = rng.random((h, w)) < 0.3
    mask[: h // 2, : w // 2] = True
    rle = mask_to_brush_rle(mask)
    assert all(0 <= b <= 255 for b in rle)
    assert np.array_equal(brush_rle_to_mask(rle, h, w), mask)


def test_brush_long_runs_split():
    values = np.full(70000 * 4, 255, np.uint8)  # longer than the largest run field (2**16)
    assert np.array_equal(brush_rle_decode(brush_rle_encode(values)), values)


def test_brush_size_mismatch():
    rle = mask_to_brush_rle(np.ones((3, 5), bool))
    with pytest.raises(ValueError, match="expected 4x4x4"):
        brush_rle_to_mask(rle, 4, 4)
    with pytest.raises(ValueError, match="truncated"):
        brush_rle_decode(rle[:8])
