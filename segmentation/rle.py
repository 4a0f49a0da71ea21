"""Run-length encodings of binary masks: COCO RLE and Label Studio's brush RLE, in plain numpy.

Formats
-------
COCO RLE
    ``{"size": [H, W], "counts": ...}``. The mask is flattened in column-major (Fortran) order and
    ``counts`` alternates run lengths of 0s and 1s, starting with 0s. ``counts`` is either a list of
    ints (*uncompressed*) or a string (*compressed*, the LEB128-like 6-bit ASCII code of
    ``pycocotools``: 5 data bits per character plus a continuation bit, offset by 48, with run
    ``i > 2`` stored as the difference to run ``i - 2``).
Label Studio brush RLE
    The ``value.rle`` list of ints (bytes) of a ``brushlabels`` result, produced by Label Studio's
    brush tool (the ``rle-pack`` codec of thi.ng/umbrella, decoded by ``label-studio-converter``).
    It is a big-endian bit stream: a 32-bit value count ``num``, a 5-bit ``word_size - 1``, four 4-bit
    ``rle_size - 1`` fields, then chunks: 1 bit *repeat*, 2 bits selecting a run-length size, the run
    length minus one in that many bits, then one word (repeat) or that many words (literal). The
    decoded values are an RGBA image flattened row by row (``H * W * 4`` bytes); the mask is the
    alpha channel.

Bounds
------
Every decoder checks the sizes an encoding claims *before* it allocates anything: a mask has at
most :data:`MAX_MASK_PIXELS` pixels (the image loader's default pixel limit, so every image that
loads can have masks), a compressed COCO count has at most :data:`MAX_COUNT_CHARS` characters, a
COCO RLE has at most one run more than it has pixels, and a brush RLE's declared value count must be
``H * W * 4`` of the mask asked for. Parsing is linear in the length of the encoding (vectorised
with numpy). Every malformed input raises ``ValueError`` with a one-line message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semcontrib.imageio import DEFAULT_MAX_PIXELS

MAX_MASK_PIXELS = DEFAULT_MAX_PIXELS
"""Most pixels (H * W) a decoded mask may have; larger claims are refused before allocation."""

MAX_COUNT_CHARS = 7
"""Most characters of one compressed COCO count: 7 x 5 bits hold pycocotools' 32-bit counts and
their signed differences; longer groups are refused (they would only encode absurd run lengths)."""

# --------------------------------------------------------------------------- COCO RLE


def coco_rle_encode(mask: np.ndarray, compressed: bool = True) -> dict[str, Any]:
    """Encode a boolean HxW mask as COCO RLE.

    Parameters
    ----------
    mask : bool (or 0/1) array HxW.
    compressed : return ``counts`` as the compressed string (default) or a list of ints.

    Returns
    -------
    dict with ``size`` = [H, W] and ``counts``.

    Examples
    --------
    >>> m = np.zeros((2, 3), bool); m[1, 1:] = True
    >>> coco_rle_encode(m, compressed=False)
    {'size': [2, 3], 'counts': [3, 1, 1, 1]}
    """
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (HxW), got shape {m.shape}")
    flat = m.astype(bool).ravel(order="F")
    counts = _runs(flat)
    out: dict[str, Any] = {"size": [int(m.shape[0]), int(m.shape[1])]}
    out["counts"] = _counts_to_string(counts) if compressed else counts
    return out


def check_mask_size(height: Any, width: Any, max_pixels: int = MAX_MASK_PIXELS,
                    what: str = "mask") -> tuple[int, int]:
    """Validate a claimed mask size; return ``(H, W)`` as ints.

    Raises ``ValueError`` unless both are non-negative integers (integral floats such as ``480.0`` are
    accepted; bools are not) and ``H * W`` is at most
    ``max_pixels``. Nothing is allocated.
    """
    sides = []
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise ValueError(f"{what} {name} must be an integer, got {_short(v)}")
        if v < 0:
            raise ValueError(f"{what} {name} must be >= 0, got {v}")
        sides.append(int(v))
    h, w = sides
    if h * w > max_pixels:
        raise ValueError(f"{what} size {w}x{h} (WxH) = {h * w} pixels exceeds the limit of {max_pixels} pixels")
    return h, w


def coco_rle_size(rle: Mapping[str, Any], max_pixels: int = MAX_MASK_PIXELS) -> tuple[int, int]:
    """The (H, W) a COCO RLE claims, validated by :func:`check_mask_size` (nothing is decoded)."""
    if not isinstance(rle, Mapping) or "size" not in rle or "counts" not in rle:
        raise ValueError("COCO RLE must be an object with 'size' and 'counts'")
    size = rle["size"]
    if not isinstance(size, (list, tuple)) or len(size) != 2:
        raise ValueError(f"COCO RLE size must be [H, W], got {_short(size)}")
    return check_mask_size(size[0], size[1], max_pixels, "COCO RLE")


def coco_rle_counts(rle: Mapping[str, Any], max_pixels: int = MAX_MASK_PIXELS) -> np.ndarray:
    """Run lengths of a COCO RLE as int64, checked (non-negative, summing to H*W) but not expanded.

    The size is validated first, so no input can make this allocate more than the encoding's own
    length (times a constant). Linear time in the length of ``counts``.
    """
    h, w = coco_rle_size(rle, max_pixels)
    n_pixels = h * w
    raw = rle["counts"]
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = bytes(raw).decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("compressed COCO RLE counts must be ASCII") from None
    if isinstance(raw, str):
        if len(raw) > MAX_COUNT_CHARS * (n_pixels + 1):
            raise ValueError(f"compressed COCO RLE of {len(raw)} characters is too long for {n_pixels} pixels")
        counts = _string_to_counts(raw)
    elif isinstance(raw, (list, tuple, np.ndarray)):
        if len(raw) > n_pixels + 1:
            raise ValueError(f"COCO RLE has {len(raw)} runs, more than its {n_pixels} pixels + 1")
        counts = _int_array(raw)
    else:
        raise ValueError(f"COCO RLE counts must be a string or a list of integers, got {type(raw).__name__}")
    if counts.size > n_pixels + 1:
        raise ValueError(f"COCO RLE has {counts.size} runs, more than its {n_pixels} pixels + 1")
    if counts.size and (counts.min() < 0 or counts.max() > n_pixels):
        raise ValueError(f"COCO RLE counts must lie in 0..H*W = {n_pixels}")
    total = int(counts.sum())
    if total != n_pixels:
        raise ValueError(f"COCO RLE counts sum to {total}, expected H*W = {n_pixels}")
    return counts


def coco_rle_decode(rle: Mapping[str, Any], max_pixels: int = MAX_MASK_PIXELS) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list ``counts``) to a bool HxW mask.

    Raises ``ValueError`` (one line) for anything malformed, and for a size over ``max_pixels``
    before anything is allocated.
    """
    h, w = coco_rle_size(rle, max_pixels)
    counts = coco_rle_counts(rle, max_pixels)
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    return flat.reshape((h, w), order="F")


def _runs(flat: np.ndarray) -> list[int]:
    """Run lengths of a flat bool array, starting with a (possibly empty) run of False."""
    if flat.size == 0:
        return [0]
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    if flat[0]:
        runs = [0] + runs
    return [int(r) for r in runs]


def _counts_to_string(counts: Sequence[int]) -> str:
    chars: list[str] = []
    for i, count in enumerate(counts):
        x = int(count)
        if i > 2:
            x -= int(counts[i - 2])
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = (x != -1) if (c & 0x10) else (x != 0)
            if more:
                c |= 0x20
            chars.append(chr(c + 48))
    return "".join(chars)


def _string_to_counts(s: str) -> np.ndarray:
    """Parse pycocotools' compressed counts string (vectorised, linear time) to int64 run lengths."""
    try:
        raw = s.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError("compressed COCO RLE counts must be ASCII") from None
    c = np.frombuffer(raw, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    bad = np.flatnonzero((c < 0) | (c >= 64))
    if bad.size:
        raise ValueError(f"invalid character {s[int(bad[0])]!r} in compressed COCO RLE string")
    last = (c & 0x20) == 0  # the last character of each count has no continuation bit
    if not last[-1]:
        raise ValueError("truncated compressed COCO RLE string")
    ends = np.flatnonzero(last)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if int(lengths.max()) > MAX_COUNT_CHARS:
        raise ValueError(f"a compressed COCO RLE count spans more than {MAX_COUNT_CHARS} characters")
    position = np.arange(c.size) - np.repeat(starts, lengths)
    x = np.add.reduceat((c & 0x1F) << (5 * position), starts)  # disjoint bits: sum == or
    negative = (c[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * lengths[negative])  # sign extension
    counts = x.copy()  # run i > 2 is stored as the difference to run i - 2
    counts[1::2] = np.cumsum(x[1::2])
    counts[2::2] = np.cumsum(x[2::2])
    return counts


def _int_array(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """A list of integers as int64 (integral floats accepted), else ``ValueError``."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("COCO RLE counts must be a list of integers") from None
    if arr.ndim != 1 and arr.size:
        raise ValueError("COCO RLE counts must be a flat list of integers")
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    if arr.dtype.kind in "iu":
        if arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max:
            raise ValueError("COCO RLE counts must lie in 0..H*W")
        return arr.astype(np.int64)
    if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.floor(arr)):
        if np.abs(arr).max() > 2.0**62:
            raise ValueError("COCO RLE counts must lie in 0..H*W")
        return arr.astype(np.int64)
    raise ValueError("COCO RLE counts must be a list of integers")


def _short(v: Any) -> str:
    """``repr`` of a value cut to 40 characters, for one-line messages."""
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


# --------------------------------------------------------------------------- Label Studio brush RLE


@dataclass(frozen=True)
class BrushHeader:
    """The header of a Label Studio brush RLE stream.

    Attributes
    ----------
    num : the number of values the stream declares (``H * W * 4`` for an RGBA mask).
    word_size : bits per value, 1..32 (image masks use <= 8).
    rle_sizes : the four run-length field widths in bits, each 1..16.
    """

    num: int
    word_size: int
    rle_sizes: tuple[int, int, int, int]

    HEADER_BITS = 32 + 5 + 4 * 4


class _BitReader:
    """Big-endian bit reader over bytes; each read is O(1) (a 64-bit window), so decoding is linear."""

    def __init__(self, data: bytes) -> None:
        self.buf = bytes(data) + b"\0" * 8
        self.n_bits = 8 * len(data)
        self.pos = 0

    def read(self, n: int) -> int:
        """The next ``n`` (<= 32) bits as an unsigned int."""
        if self.pos + n > self.n_bits:
            raise ValueError("Label Studio brush RLE ends early (truncated stream)")
        byte, offset = divmod(self.pos, 8)
        window = int.from_bytes(self.buf[byte:byte + 8], "big")
        self.pos += n
        return (window >> (64 - offset - n)) & ((1 << n) - 1)

    def read_words(self, count: int, size: int) -> np.ndarray:
        """The next ``count`` words of ``size`` (<= 8) bits as uint8, vectorised."""
        n = count * size
        if self.pos + n > self.n_bits:
            raise ValueError("Label Studio brush RLE ends early (truncated stream)")
        byte, offset = divmod(self.pos, 8)
        chunk = np.frombuffer(self.buf, dtype=np.uint8, count=(offset + n + 7) // 8, offset=byte)
        bits = np.unpackbits(chunk)[offset:offset + n].reshape(count, size)
        self.pos += n
        weights = (1 << np.arange(size - 1, -1, -1)).astype(np.int64)
        return (bits.astype(np.int64) @ weights).astype(np.uint8)


_MASK64 = (1 << 64) - 1


def _brush_bytes(rle: Sequence[int] | np.ndarray) -> bytes:
    try:
        data = np.asarray(rle)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("Label Studio brush RLE must be a list of byte values (0..255)") from None
    if (data.ndim != 1 or data.size < 7 or data.dtype.kind not in "iu"
            or data.min() < 0 or data.max() > 255):
        raise ValueError("Label Studio brush RLE must be a list of at least 7 byte values (0..255)")
    return data.astype(np.uint8).tobytes()


def brush_rle_header(rle: Sequence[int] | np.ndarray) -> BrushHeader:
    """Read (and check) the header of a brush RLE without decoding anything."""
    return _header(_brush_bytes(rle))


def _header(data: bytes) -> BrushHeader:
    bits = _BitReader(data[:8])
    num = bits.read(32)
    word_size = bits.read(5) + 1
    sizes = (bits.read(4) + 1, bits.read(4) + 1, bits.read(4) + 1, bits.read(4) + 1)
    if word_size > 8:
        raise ValueError(f"brush RLE word size {word_size} > 8 bits is not an image mask")
    return BrushHeader(num, word_size, sizes)


def brush_rle_decode(rle: Sequence[int] | np.ndarray, max_values: int = 4 * MAX_MASK_PIXELS) -> np.ndarray:
    """Decode Label Studio's brush RLE to the flat uint8 value array (RGBA, ``H * W * 4``).

    Parameters
    ----------
    rle : the ``value.rle`` list of a ``brushlabels`` result (ints 0..255).
    max_values : the largest declared value count accepted (checked before allocating).

    Returns
    -------
    uint8 array of ``num`` values; reshape to (H, W, 4) and take ``[..., 3]`` for the mask
    (see :func:`brush_rle_to_mask`).
    """
    data = _brush_bytes(rle)
    head = _header(data)
    if head.num > max_values:
        raise ValueError(f"brush RLE declares {head.num} values, more than the limit of {max_values}")
    # every chunk holds at least 3 + 1 bits and ends a run of >= 1 value: a stream this long can hold
    # at most this many values, so a short stream cannot claim a huge allocation
    max_run = 1 << max(head.rle_sizes)
    if head.num > max_run * (8 * len(data)) // 4 + 1:
        raise ValueError(f"brush RLE declares {head.num} values, more than a stream of {len(data)} bytes holds")
    bits = _BitReader(data)
    bits.pos = BrushHeader.HEADER_BITS
    out = np.zeros(head.num, dtype=np.uint8)
    sizes, word = head.rle_sizes, head.word_size
    buf, n_bits, pos = bits.buf, bits.n_bits, bits.pos
    i = 0
    while i < head.num:
        # one 64-bit window holds a chunk's head and a repeat chunk's word (<= 3 + 16 + 8 bits + offset 7)
        byte, offset = divmod(pos, 8)
        window = (int.from_bytes(buf[byte:byte + 8], "big") << offset) & _MASK64
        repeat = window >> 63
        size = sizes[(window >> 61) & 3]
        j = i + 1 + ((window >> (61 - size)) & ((1 << size) - 1))
        pos += 3 + size
        if pos > n_bits:
            raise ValueError("Label Studio brush RLE ends early (truncated stream)")
        if j > head.num:
            raise ValueError("Label Studio brush RLE run goes past the declared length")
        if repeat:
            if pos + word > n_bits:
                raise ValueError("Label Studio brush RLE ends early (truncated stream)")
            out[i:j] = (window >> (61 - size - word)) & ((1 << word) - 1)
            pos += word
        else:
            bits.pos = pos
            out[i:j] = bits.read_words(j - i, word)
            pos = bits.pos
        i = j
    return out


def brush_rle_encode(values: np.ndarray, word_size: int = 8,
                     rle_sizes: Sequence[int] = (3, 4, 8, 16), literals: bool = False) -> list[int]:
    """Encode a flat uint8 array (RGBA values) in Label Studio's brush RLE.

    The inverse of :func:`brush_rle_decode`; used to write test fixtures and example exports.
    Runs of equal values become repeat chunks; with ``literals=True`` runs of length 1 are gathered
    into literal chunks (as Label Studio's own encoder does), otherwise every run is a repeat chunk.
    """
    v = np.asarray(values).astype(np.int64).ravel()
    if not 1 <= word_size <= 8:
        raise ValueError(f"word_size must be 1..8 bits, got {word_size}")
    if v.size and (v.min() < 0 or v.max() >= (1 << word_size)):
        raise ValueError(f"values must fit in {word_size} bits")
    sizes = list(rle_sizes)
    if len(sizes) != 4 or not all(1 <= s <= 16 for s in sizes):
        raise ValueError("rle_sizes must be four bit widths in 1..16")
    bits: list[str] = [format(v.size, "032b"), format(word_size - 1, "05b")]
    bits += [format(s - 1, "04b") for s in sizes]
    max_run = 1 << max(sizes)

    def literal(words: list[int]) -> str:
        n = len(words)
        code = next(k for k, size in enumerate(sizes) if n - 1 < (1 << size))
        return ("0" + format(code, "02b") + format(n - 1, f"0{sizes[code]}b")
                + "".join(format(x, f"0{word_size}b") for x in words))

    if v.size:
        change = np.flatnonzero(v[1:] != v[:-1]) + 1
        starts = np.concatenate([[0], change]).tolist()
        ends = np.concatenate([change, [v.size]]).tolist()
        pending: list[int] = []  # single values waiting for a literal chunk
        for s, e in zip(starts, ends):
            if literals and e - s == 1:
                pending.append(int(v[s]))
                if len(pending) == max_run:
                    bits.append(literal(pending))
                    pending = []
                continue
            if pending:
                bits.append(literal(pending))
                pending = []
            while s < e:
                n = min(e - s, max_run)
                code = next(k for k, size in enumerate(sizes) if n - 1 < (1 << size))
                bits.append("1" + format(code, "02b") + format(n - 1, f"0{sizes[code]}b")
                            + format(int(v[s]), f"0{word_size}b"))
                s += n
        if pending:
            bits.append(literal(pending))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[k:k + 8], 2) for k in range(0, len(stream), 8)]


def brush_rle_to_mask(rle: Sequence[int] | np.ndarray, height: int, width: int,
                      max_pixels: int = MAX_MASK_PIXELS) -> np.ndarray:
    """Decode a brush RLE to a bool HxW mask (alpha channel > 0).

    The size is checked against ``max_pixels`` and the header's value count against ``H * W * 4``
    before anything is allocated.
    """
    h, w = check_mask_size(height, width, max_pixels, "brush mask")
    head = brush_rle_header(rle)
    if head.num != h * w * 4:
        raise ValueError(f"brush RLE holds {head.num} values, expected {h}x{w}x4 = {h * w * 4}")
    values = brush_rle_decode(rle, max_values=h * w * 4)
    return values.reshape(h, w, 4)[..., 3] > 0


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a bool HxW mask as Label Studio brush RLE (RGBA, all channels 255 where set)."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (HxW), got shape {m.shape}")
    rgba = np.repeat((m * 255).astype(np.uint8)[..., None], 4, axis=2)
    return brush_rle_encode(rgba.ravel())
