"""What several benchmarks share: the bundled photographs (as model inputs, or as files with distinct
variants) and a checkout of an earlier engine to measure against in the same run."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def demo_rgbs(n: int, size: int) -> list:
    """``n`` bundled photographs as uint8 size×size×3 arrays (repeated when there are fewer)."""
    import numpy as np

    from semcontrib.demo import DEMO_IMAGES
    from semcontrib.imageio import resize_rgb

    names = list(DEMO_IMAGES)[:n]
    rgbs = []
    for name in names:
        arr = DEMO_IMAGES[name][0]()
        if arr.ndim == 2:
            arr = np.repeat(arr[:, :, None], 3, axis=2)
        rgbs.append(resize_rgb(arr[:, :, :3].astype(np.uint8), size))
    while len(rgbs) < n:
        rgbs.append(rgbs[len(rgbs) % len(names)])
    return rgbs


def photo_variants(folder: Path, n: int) -> None:
    """The bundled photographs as files in ``folder``, then mirrored, rotated and resized variants up to
    ``n`` files, no two of them the same file."""
    from PIL import Image, ImageOps

    from semcontrib.demo import write_demo_images

    paths = write_demo_images(folder)
    k = 0
    while len(paths) + k < n:
        src = Image.open(paths[k % len(paths)])
        rnd = k // len(paths)
        img = ImageOps.mirror(src) if rnd % 2 == 0 else src.rotate(90 * (1 + rnd // 2 % 3), expand=True)
        if rnd >= 2:
            f = 92 - rnd  # a different size in every round: no two variants are the same file
            img = img.resize((max(16, img.width * f // 100), max(16, img.height * f // 100)))
        img.save(folder / f"variant{k:05d}.png")
        k += 1


def make_files(folder: Path, start: int, count: int) -> float:
    """``count`` distinct 8-byte files named like images (``im<k>.jpg``, 1,000 a folder), numbered from
    ``start``: inputs for planning benchmarks. Returns the seconds it took."""
    t = time.perf_counter()
    for i in range(start, start + count):
        d = folder / f"d{i // 1000:05d}"
        if i % 1000 == 0 or i == start:
            d.mkdir(parents=True, exist_ok=True)
        fd = os.open(d / f"im{i:07d}.jpg", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, i.to_bytes(8, "little"))
        os.close(fd)
    return time.perf_counter() - t


@contextmanager
def work_folder(given: str | None, prefix: str) -> Iterator[Path]:
    """The benchmark's work folder: ``given`` (created if need be, kept), or a temporary one, removed after."""
    work = Path(given) if given else Path(tempfile.mkdtemp(prefix=prefix))
    work.mkdir(parents=True, exist_ok=True)
    try:
        yield work
    finally:
        if not given:
            shutil.rmtree(work, ignore_errors=True)


def baseline_tree(ref: str, dest: Path) -> Path:
    """The repository at git ``ref`` in ``dest``, importable from there as the wheel lays it out; a ``dest``
    that already holds it (a kept work folder) is used as it is."""
    if (dest / "semcontrib").is_dir():
        return dest
    dest.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(REPO), "archive", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for sub in ("segmentation", "dashboard", "data"):  # the installed layout, without installing it
        (dest / "semcontrib" / sub).symlink_to(dest / sub)
    return dest
