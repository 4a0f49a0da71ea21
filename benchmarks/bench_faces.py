"""Milliseconds per image of the ``faces`` region source on the twelve bundled photographs.

Usage::

    python benchmarks/bench_faces.py [--repeat 3]

Prints, per photograph, the time of ``FacesSource.segment`` (detection on the downscaled copy,
landmarks at full size, polygons) and the number of faces found; then the mean over the photographs
for the default options, ``max_side=320`` and ``upsample=1``; the one-off model loading; the landmark
step alone (one face); and, as the
baseline measured in the same run, the default ``landscape`` source (rules, no class evidence) on the
same photographs, with the ratio faces / landscape. Single-threaded (dlib's detector uses one core).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from semcontrib.demo import DEMO_IMAGES
from semcontrib.regions import ImageInput
from semcontrib.segmentation import make_region_source


def _photos() -> dict[str, np.ndarray]:
    out = {}
    for name, (load, _) in DEMO_IMAGES.items():
        rgb = np.asarray(load())
        if rgb.ndim == 2:
            rgb = np.stack([rgb] * 3, axis=-1)
        out[name] = np.ascontiguousarray(rgb[..., :3].astype(np.uint8))
    return out


def _ms(src, image: ImageInput, repeat: int) -> float:
    t0 = time.perf_counter()
    for _ in range(repeat):
        src.segment(image)
    return 1000 * (time.perf_counter() - t0) / repeat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    photos = {n: ImageInput(n, rgb, n) for n, rgb in _photos().items()}
    faces = make_region_source("faces")
    t0 = time.perf_counter()
    faces.segment(photos["coffee"])  # loads dlib's detector and the landmark model (once per process)
    load_s = time.perf_counter() - t0

    print(f"{'photograph':22s} {'size':>9s} {'faces':>5s} {'ms':>8s}")
    per = {}
    for name, im in photos.items():
        n = len(faces.detect(im.rgb))
        per[name] = _ms(faces, im, args.repeat)
        print(f"{name:22s} {im.rgb.shape[1]:4d}x{im.rgb.shape[0]:<4d} {n:5d} {per[name]:8.1f}")

    variants = {"faces (default: max_side 640, upsample 0)": per}
    for label, opts in (("faces max_side=320", {"max_side": "320"}), ("faces upsample=1", {"upsample": "1"})):
        src = make_region_source("faces", **opts)
        variants[label] = {n: _ms(src, im, args.repeat) for n, im in photos.items()}
    landscape = make_region_source("landscape")
    landscape.segment(photos["coffee"])
    base = {n: _ms(landscape, im, 1) for n, im in photos.items()}

    import dlib

    rgb = photos["grace_hopper"].rgb
    pts = faces.detect(rgb)[0][0]
    box = dlib.rectangle(*(int(v) for v in (pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max())))
    t0 = time.perf_counter()
    for _ in range(50):
        faces._predictor(rgb, box)
    landmark_ms = 1000 * (time.perf_counter() - t0) / 50

    print(f"\nmodel loading (detector + 68-point model), once per process: {load_s:.2f} s")
    print(f"68 landmarks of one face (grace_hopper, full size): {landmark_ms:.2f} ms; the rest is detection")
    print(f"{'source':45s} {'mean ms / image':>16s} {'max ms':>8s} {'vs landscape':>13s}")
    base_mean = float(np.mean(list(base.values())))
    for label, times in [*variants.items(), ("landscape (rules, no evidence; baseline)", base)]:
        mean = float(np.mean(list(times.values())))
        print(f"{label:45s} {mean:16.1f} {max(times.values()):8.1f} {mean / base_mean:12.2f}x")


if __name__ == "__main__":
    main()
