"""COCO RLE and Label Studio brush RLE: hand examples, round trips, reference parsers, bounds, fuzzing."""


import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from semcontrib.segmentation.rle import (
    MAX_COUNT_CHARS,
    MAX_MASK_PIXELS,
    _string_to_counts,
    brush_rle_decode,
    brush_rle_encode,
    brush_rle_header,
    brush_rle_to_mask,
    check_mask_size,
    coco_rle_counts,
    coco_rle_decode,
    coco_rle_encode,
    mask_to_brush_rle,
)
from tests.segmentation.helpers import peak_bytes


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


# --------------------------------------------------------------------------- bounds, linear parsing, fuzzing

FUZZ = settings(max_examples=60, deadline=2000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])


def _reference_string_to_counts(s):
    """pycocotools' rleFrString, transcribed literally (scalar loop, unbounded characters per count)."""
    counts, p = [], 0
    while p < len(s):
        x, k, more = 0, 0, True
        while more:
            if p >= len(s):
                raise ValueError("truncated")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError("bad character")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return counts


def _reference_brush_decode(stream):
    """label-studio-converter's decode_rle, transcribed on a '0'/'1' string (slow reference)."""
    bits = "".join(format(int(b), "08b") for b in stream)
    pos = 0

    def read(n):
        nonlocal pos
        if pos + n > len(bits):
            raise ValueError("truncated")
        pos += n
        return int(bits[pos - n:pos], 2)

    num, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out, i = [], 0
    while i < num:
        repeat = read(1)
        n = read(sizes[read(2)]) + 1
        if i + n > num:
            raise ValueError("past the end")
        out += [read(word)] * n if repeat else [read(word) for _ in range(n)]
        i += n
    return out


def test_compressed_counts_match_the_reference_on_real_encodings():
    rng = np.random.default_rng(3)
    for _ in range(20):
        m = rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.random()
        s = coco_rle_encode(m)["counts"]
        assert _string_to_counts(s).tolist() == _reference_string_to_counts(s)


@FUZZ
@given(st.text(alphabet=st.characters(min_codepoint=40, max_codepoint=120), max_size=60))
def test_compressed_counts_match_the_reference_on_any_text(s):
    try:
        expected = _reference_string_to_counts(s)
    except ValueError:
        with pytest.raises(ValueError):
            _string_to_counts(s)
        return
    groups = [g for g in "".join("|" if ord(c) - 48 < 32 else "." for c in s).split("|")]
    if max((len(g) + 1 for g in groups[:-1]), default=0) > MAX_COUNT_CHARS:
        with pytest.raises(ValueError, match="more than"):
            _string_to_counts(s)
    else:
        assert _string_to_counts(s).tolist() == expected


@FUZZ
@given(hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=0, max_side=40)), st.booleans())
def test_coco_round_trip_property(mask, compressed):
    rle = coco_rle_encode(mask, compressed=compressed)
    assert np.array_equal(coco_rle_decode(rle), mask)
    assert coco_rle_counts(rle).sum() == mask.size


_sizes = st.one_of(st.integers(-5, 2**40), st.floats(allow_nan=True), st.booleans(), st.text(max_size=3))
_counts = st.one_of(
    st.text(max_size=80),
    st.lists(st.one_of(st.integers(-2**70, 2**70), st.integers(0, 50), st.floats(), st.none()), max_size=40),
    st.binary(max_size=30), st.none(), st.integers())


@st.composite
def _mutated_coco(draw):
    """A real encoding with one edit: a changed character or count, a cut, or a changed size."""
    mask = draw(hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=20)))
    rle = coco_rle_encode(mask, compressed=draw(st.booleans()))
    counts, size = rle["counts"], rle["size"]
    kind = draw(st.sampled_from(["none", "edit", "cut", "size"]))
    i = draw(st.integers(0, max(len(counts) - 1, 0)))
    if kind == "edit" and len(counts):
        if isinstance(counts, str):
            counts = counts[:i] + draw(st.characters(min_codepoint=40, max_codepoint=115)) + counts[i + 1:]
        else:
            counts = counts[:i] + [draw(st.integers(-3, 30))] + counts[i + 1:]
    elif kind == "cut":
        counts = counts[:i]
    elif kind == "size":
        size = [draw(st.integers(0, 25)), draw(st.integers(0, 25))]
    return size, counts


@FUZZ
@given(st.one_of(
    st.tuples(st.one_of(st.lists(_sizes, max_size=3), st.tuples(st.integers(0, 3000), st.integers(0, 3000)),
                        _sizes), _counts),
    _mutated_coco()))
def test_coco_decode_fuzz_loads_or_raises_within_bounds(case):
    size, counts = case
    limit = 1_000_000
    result, peak = peak_bytes(lambda: coco_rle_decode({"size": size, "counts": counts}, max_pixels=limit))
    if not isinstance(result, ValueError):
        assert result.dtype == bool and result.shape == tuple(int(v) for v in size)
        assert result.size <= limit
    assert peak < 8 * limit + 2_000_000  # bounded by the cap, never by what the RLE claims


@st.composite
def _mutated_brush(draw):
    """A real brush stream, as is, with one byte changed or cut."""
    values = draw(hnp.arrays(np.uint8, st.integers(0, 40), elements=st.integers(0, 3)))
    stream = brush_rle_encode(values, rle_sizes=draw(st.sampled_from([(3, 4, 8, 16), (1, 2, 3, 4)])),
                              literals=draw(st.booleans()))
    i = draw(st.integers(0, len(stream) - 1))
    kind = draw(st.sampled_from(["none", "edit", "cut"]))
    if kind == "edit":
        return stream[:i] + [draw(st.integers(0, 255))] + stream[i + 1:]
    return stream[:i + 1] if kind == "cut" else stream


@FUZZ
@given(st.one_of(st.lists(st.integers(0, 255), max_size=60), _mutated_brush()))
def test_brush_decode_fuzz_matches_reference_or_raises(stream):
    limit = 200_000
    result, peak = peak_bytes(lambda: brush_rle_decode(stream, max_values=limit))
    if isinstance(result, ValueError):
        assert str(result) and "\n" not in str(result)
    else:
        assert result.dtype == np.uint8 and result.size <= limit
        assert result.tolist() == _reference_brush_decode(stream)
    assert peak < 4 * limit + 2_000_000


@FUZZ
@given(st.one_of(st.lists(st.one_of(st.integers(-300, 300), st.floats(), st.text(max_size=2)), max_size=12),
                 st.none(), st.text(max_size=5)),
       st.integers(-3, 5000), st.integers(-3, 5000))
def test_brush_to_mask_fuzz_any_input(stream, h, w):
    result, peak = peak_bytes(lambda: brush_rle_to_mask(stream, h, w, max_pixels=10_000))
    assert isinstance(result, ValueError) or result.shape == (h, w)
    assert peak < 1_000_000


@FUZZ
@given(st.integers(1, 8).flatmap(lambda ws: st.tuples(
    st.just(ws), hnp.arrays(np.uint8, st.integers(0, 300), elements=st.integers(0, 2**ws - 1)),
    st.lists(st.integers(1, 16), min_size=4, max_size=4), st.booleans())))
def test_brush_round_trip_property(case):
    word_size, values, sizes, literals = case
    stream = brush_rle_encode(values, word_size=word_size, rle_sizes=sizes, literals=literals)
    assert np.array_equal(brush_rle_decode(stream), values)
    assert brush_rle_decode(stream).tolist() == _reference_brush_decode(stream)


@FUZZ
@given(hnp.arrays(bool, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30)))
def test_mask_brush_round_trip_property(mask):
    assert np.array_equal(brush_rle_to_mask(mask_to_brush_rle(mask), *mask.shape), mask)


def test_sizes_are_checked_before_anything_is_allocated():
    huge = {"size": [60000, 60000], "counts": "0"}
    result, peak = peak_bytes(lambda: coco_rle_decode(huge))
    assert isinstance(result, ValueError) and "exceeds the limit" in str(result)
    assert peak < 100_000
    assert check_mask_size(MAX_MASK_PIXELS, 1) == (MAX_MASK_PIXELS, 1)
    with pytest.raises(ValueError, match="exceeds"):
        check_mask_size(MAX_MASK_PIXELS + 1, 1)
    with pytest.raises(ValueError, match="integer"):
        check_mask_size(True, 3)
    assert check_mask_size(4.0, 2) == (4, 2)
    # a brush stream of 7 bytes whose header claims 2**32 - 1 values, for masks of any size
    claim = brush_rle_encode(np.zeros(0, np.uint8))
    claim[:4] = [255, 255, 255, 255]
    assert brush_rle_header(claim).num == 2**32 - 1
    for fn in (lambda: brush_rle_decode(claim), lambda: brush_rle_to_mask(claim, 10, 10),
               lambda: brush_rle_to_mask(claim, 60000, 60000)):
        result, peak = peak_bytes(fn)
        assert isinstance(result, ValueError) and peak < 100_000


def test_run_count_bounds():
    with pytest.raises(ValueError, match="more than its 4 pixels"):
        coco_rle_decode({"size": [2, 2], "counts": [0] * 6 + [4]})
    with pytest.raises(ValueError, match="0..H\\*W"):
        coco_rle_decode({"size": [2, 2], "counts": [2**62, -2**62 + 4]})
    with pytest.raises(ValueError, match="integers"):
        coco_rle_decode({"size": [2, 2], "counts": [1.5, 2.5]})
    assert coco_rle_decode({"size": [2, 2], "counts": [1.0, 3.0]}).sum() == 3
    with pytest.raises(ValueError, match="spans more than"):
        coco_rle_decode({"size": [2, 2], "counts": "o" * 20 + "0"})  # 21-character count
