"""The demo corpus: real photographs that ship inside installed packages (no download)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        return np.asarray(getattr(data, name)())

    return load


def _sklearn(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(name))

    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib import cbook

    path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    with Image.open(str(path)) as img:
        return np.asarray(img.convert("RGB"))


# name -> loader of an RGB (or grey) uint8 array; the labels are what a person sees in the photo.
DEMO_IMAGES: dict[str, tuple[Callable[[], np.ndarray], str]] = {
    "chelsea": (_skimage("chelsea"), "a cat (Chelsea) on a sofa"),
    "coffee": (_skimage("coffee"), "a cup of espresso on a saucer"),
    "astronaut": (_skimage("astronaut"), "an astronaut in a space suit, flag behind"),
    "rocket": (_skimage("rocket"), "a rocket on its launch pad"),
    "motorcycle": (lambda: np.asarray(__import__("skimage.data", fromlist=["x"]).stereo_motorcycle()[0]),
                   "a motorcycle in a showroom"),
    "china": (_sklearn("china.jpg"), "a Chinese temple among trees"),
    "flower": (_sklearn("flower.jpg"), "a flower in close-up"),
    "grace_hopper": (_grace_hopper, "a portrait of Grace Hopper"),
    "hubble": (_skimage("hubble_deep_field"), "a deep-field sky image"),
    "immunohistochemistry": (_skimage("immunohistochemistry"), "a microscope image"),
    "coins": (_skimage("coins"), "old coins on a table (greyscale)"),
    "camera": (_skimage("camera"), "a cameraman on a lawn (greyscale)"),
}


def write_demo_images(folder: str | Path) -> list[Path]:
    """Write the bundled photographs as PNG files into ``folder``; return their paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, (load, _) in DEMO_IMAGES.items():
        path = folder / f"{name}.png"
        if not path.is_file():
            try:
                arr = load()
            except Exception as exc:  # a package without that image: leave it out, say so
                logger.warning("demo image %s unavailable: %s", name, exc)
                continue
            Image.fromarray(arr).save(path)
        out.append(path)
    return out


#: the part annotations shipped for the bundled photographs (``data/build/part_annotations_build.py``)
PART_ANNOTATIONS = "part_annotations.coco.json"
#: what the shipped parts are cut to in the parts demo: the landscape source's animal and person regions
PARTS_FOREGROUND = "landscape:animal+person"


def demo_regions(spec: str | None) -> tuple[str, str]:
    """The demo's region spec and corpus folder name for ``semcontrib demo --regions SPEC``.

    ``None`` is ``landscape`` in ``corpus``. ``parts`` alone is CatViz's view of the bundled photographs:
    the shipped part annotations (the cat's eyes, nose and ear; the astronaut's and Grace Hopper's eyes,
    nose, mouth and face) cut to the landscape source's ``animal`` and ``person`` regions, the rest of
    them ``body``, everything else ``background`` (photographs without parts get body and background
    only), in ``corpus-parts`` so that it sits beside the landscape demo. Any other spec is used as
    given, in ``corpus``.

    Examples
    --------
    >>> demo_regions(None)
    ('landscape', 'corpus')
    >>> spec, folder = demo_regions("parts")
    >>> spec.startswith("parts:boxes=")
    True
    >>> spec.endswith("part_annotations.coco.json,foreground=landscape:animal+person")
    True
    >>> folder
    'corpus-parts'
    """
    if spec is None:
        return "landscape", "corpus"
    if spec == "parts":
        from semcontrib.paths import data_path

        return f"parts:boxes={data_path(PART_ANNOTATIONS)},foreground={PARTS_FOREGROUND}", "corpus-parts"
    return spec, "corpus"
