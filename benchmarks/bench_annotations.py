"""Parsing annotations: the RLE codecs and the annotations source, against the previous code.

Usage::

    python benchmarks/bench_annotations.py [--images 5000] [--side 1000]

Prints, for each case, the time of the current code and of a baseline measured in the same run
(the scalar parsers this module replaced, transcribed below), and their ratio:

* compressed COCO counts of a real mask (one long string of short counts);
* a hostile compressed count (one count spanning N characters, for N and 4 N: the old parser's
  big-integer arithmetic made this quadratic; the current one refuses it after one linear scan);
* a Label Studio brush mask (a 1000 x 1000 RGBA stream);
* the annotations source on a COCO file of ``--images`` images of ``--side`` squared pixels, one
  RLE each: loading the file (time and traced peak memory; the old source decoded every mask
  while loading) and segmenting one image.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from semcontrib.regions import ImageInput
from semcontrib.segmentation.annotations import AnnotationSource
from semcontrib.segmentation.rle import (
    _string_to_counts,
    brush_rle_decode,
    coco_rle_encode,
    mask_to_brush_rle,
)


def old_string_to_counts(s: str) -> list[int]:
    """The previous parser (scalar loop, unbounded characters per count)."""
    counts: list[int] = []
    p = 0
    while p < len(s):
        x = k = 0
        more = True
        while more:
            c = ord(s[p]) - 48
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


def old_brush_decode(rle: list[int]) -> np.ndarray:
    """The previous brush decoder (bit-by-bit reads over an unpacked bit array)."""
    bits = np.unpackbits(np.asarray(rle).astype(np.uint8))
    pos = 0

    def read(n: int) -> int:
        nonlocal pos
        v = 0
        for b in bits[pos:pos + n]:
            v = (v << 1) | int(b)
        pos += n
        return v

    num, word = read(32), read(5) + 1
    sizes = [read(4) + 1 for _ in range(4)]
    out = np.zeros(num, dtype=np.uint8)
    i = 0
    while i < num:
        repeat = read(1)
        j = i + 1 + read(sizes[read(2)])
        if repeat:
            out[i:j] = read(word)
            i = j
        else:
            while i < j:
                out[i] = read(word)
                i += 1
    return out


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def row(name: str, new: float, old: float) -> None:
    print(f"{name:<48} {new * 1e3:>10.2f} ms {old * 1e3:>12.2f} ms {old / max(new, 1e-9):>9.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--side", type=int, default=1000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"{'case':<48} {'current':>13} {'baseline':>15} {'ratio':>10}")

    mask = rng.random((1000, 1000)) < 0.5
    s = coco_rle_encode(mask)["counts"]
    assert _string_to_counts(s).tolist() == old_string_to_counts(s)
    row(f"COCO compressed counts, {len(s)} chars", timed(lambda: _string_to_counts(s)),
        timed(lambda: old_string_to_counts(s), 1))
    for n in (20_000, 80_000):
        hostile = "o" * n + "0"

        def refuse(h: str = hostile) -> None:
            try:
                _string_to_counts(h)
            except ValueError:
                pass
        row(f"hostile single count of {n} chars (refused)", timed(refuse),
            timed(lambda h=hostile: old_string_to_counts(h), 1))

    blob = np.zeros((1000, 1000), bool)
    blob[200:800, 100:900] = True
    blob[::7, ::5] = ~blob[::7, ::5]
    stream = mask_to_brush_rle(blob)
    assert np.array_equal(brush_rle_decode(stream), old_brush_decode(stream))
    row(f"brush RLE 1000x1000 RGBA, {len(stream)} bytes", timed(lambda: brush_rle_decode(stream), 1),
        timed(lambda: old_brush_decode(stream), 1))

    m = np.zeros((args.side, args.side), bool)
    m[args.side // 10:9 * args.side // 10, args.side // 5:4 * args.side // 5] = True
    rle = coco_rle_encode(m)
    data = {"images": [{"id": i, "file_name": f"im{i:05d}.jpg", "height": args.side, "width": args.side}
                       for i in range(args.images)],
            "categories": [{"id": 1, "name": "thing"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "segmentation": rle}
                            for i in range(args.images)]}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "many.json"
        path.write_text(json.dumps(data))
        file_mb = path.stat().st_size / 1e6
        tracemalloc.start()
        t0 = time.perf_counter()
        src = AnnotationSource(path)
        load_s = time.perf_counter() - t0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        image = ImageInput("im00007", np.zeros((args.side, args.side, 3), np.uint8), "/x/im00007.jpg")
        seg_s = timed(lambda: src.segment(image))
    eager = args.images * args.side * args.side  # bytes the old source held after loading (bool masks)
    print(f"annotations source, {args.images} images of {args.side}x{args.side}, {file_mb:.1f} MB "
          f"file: load {load_s:.2f} s, traced peak {peak / 1e6:.1f} MB (decoded up front: {eager / 1e9:.1f} GB), "
          f"segment one image {seg_s * 1e3:.0f} ms")


if __name__ == "__main__":
    main()
