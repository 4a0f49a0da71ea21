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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

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


def coco_rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """Decode a COCO RLE (compressed string or uncompressed list ``counts``) to a bool HxW mask."""
    if "size" not in rle or "counts" not in rle:
        raise ValueError("COCO RLE needs 'size' and 'counts'")
    h, w = (int(v) for v in rle["size"])
    counts_raw = rle["counts"]
    if isinstance(counts_raw, bytes):
        counts_raw = counts_raw.decode("ascii")
    counts = _string_to_counts(counts_raw) if isinstance(counts_raw, str) else [int(c) for c in counts_raw]
    if any(c < 0 for c in counts):
        raise ValueError("COCO RLE counts must be non-negative")
    if sum(counts) != h * w:
        raise ValueError(f"COCO RLE counts sum to {sum(counts)}, expected H*W = {h * w}")
    values = np.zeros(len(counts), dtype=bool)
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


def _string_to_counts(s: str) -> list[int]:
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = 0
        k = 0
        more = True
        while more:
            if p >= len(s):
                raise ValueError("truncated compressed COCO RLE string")
            c = ord(s[p]) - 48
            if not 0 <= c < 64:
                raise ValueError(f"invalid character {s[p]!r} in compressed COCO RLE string")
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


# --------------------------------------------------------------------------- Label Studio brush RLE


class _BitReader:
    def __init__(self, data: np.ndarray) -> None:
        self.bits = np.unpackbits(data.astype(np.uint8))  # big-endian within each byte
        self.pos = 0

    def read(self, n: int) -> int:
        if self.pos + n > self.bits.size:
            raise ValueError("Label Studio brush RLE ends early (truncated stream)")
        v = 0
        for b in self.bits[self.pos:self.pos + n]:
            v = (v << 1) | int(b)
        self.pos += n
        return v


def brush_rle_decode(rle: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode Label Studio's brush RLE to the flat uint8 value array (RGBA, ``H * W * 4``).

    Parameters
    ----------
    rle : the ``value.rle`` list of a ``brushlabels`` result (ints 0..255).

    Returns
    -------
    uint8 array of ``num`` values; reshape to (H, W, 4) and take ``[..., 3]`` for the mask
    (see :func:`brush_rle_to_mask`).
    """
    data = np.asarray(rle)
    if data.ndim != 1 or data.size < 7 or (data.size and (data.min() < 0 or data.max() > 255)):
        raise ValueError("Label Studio brush RLE must be a list of at least 7 byte values (0..255)")
    bits = _BitReader(data)
    num = bits.read(32)
    word_size = bits.read(5) + 1
    rle_sizes = [bits.read(4) + 1 for _ in range(4)]
    if word_size > 8:
        raise ValueError(f"brush RLE word size {word_size} > 8 bits is not an image mask")
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = bits.read(1)
        j = i + 1 + bits.read(rle_sizes[bits.read(2)])
        if j > num:
            raise ValueError("Label Studio brush RLE run goes past the declared length")
        if repeat:
            out[i:j] = bits.read(word_size)
            i = j
        else:
            while i < j:
                out[i] = bits.read(word_size)
                i += 1
    return out


def brush_rle_encode(values: np.ndarray, word_size: int = 8,
                     rle_sizes: Sequence[int] = (3, 4, 8, 16)) -> list[int]:
    """Encode a flat uint8 array (RGBA values) in Label Studio's brush RLE (repeat chunks only).

    The inverse of :func:`brush_rle_decode`; used to write test fixtures and example exports.
    """
    v = np.asarray(values).astype(np.int64).ravel()
    if v.size and (v.min() < 0 or v.max() >= (1 << word_size)):
        raise ValueError(f"values must fit in {word_size} bits")
    sizes = list(rle_sizes)
    if len(sizes) != 4 or not all(1 <= s <= 16 for s in sizes):
        raise ValueError("rle_sizes must be four bit widths in 1..16")
    bits: list[str] = [format(v.size, "032b"), format(word_size - 1, "05b")]
    bits += [format(s - 1, "04b") for s in sizes]
    max_run = 1 << max(sizes)
    if v.size:
        change = np.flatnonzero(v[1:] != v[:-1]) + 1
        starts = np.concatenate([[0], change])
        ends = np.concatenate([change, [v.size]])
        for s, e in zip(starts.tolist(), ends.tolist()):
            while s < e:
                n = min(e - s, max_run)
                code = next(k for k, size in enumerate(sizes) if n - 1 < (1 << size))
                bits.append("1" + format(code, "02b") + format(n - 1, f"0{sizes[code]}b")
                            + format(int(v[s]), f"0{word_size}b"))
                s += n
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    return [int(stream[k:k + 8], 2) for k in range(0, len(stream), 8)]


def brush_rle_to_mask(rle: Sequence[int] | np.ndarray, height: int, width: int) -> np.ndarray:
    """Decode a brush RLE to a bool HxW mask (alpha channel > 0)."""
    values = brush_rle_decode(rle)
    if values.size != height * width * 4:
        raise ValueError(f"brush RLE holds {values.size} values, expected {height}x{width}x4 = "
                         f"{height * width * 4}")
    return values.reshape(height, width, 4)[..., 3] > 0


def mask_to_brush_rle(mask: np.ndarray) -> list[int]:
    """Encode a bool HxW mask as Label Studio brush RLE (RGBA, all channels 255 where set)."""
    m = np.asarray(mask).astype(bool)
    if m.ndim != 2:
        raise ValueError(f"mask must be 2-D (HxW), got shape {m.shape}")
    rgba = np.repeat((m * 255).astype(np.uint8)[..., None], 4, axis=2)
    return brush_rle_encode(rgba.ravel())
