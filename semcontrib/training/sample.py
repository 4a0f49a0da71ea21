"""A small labelled sample set built from the photographs bundled with scikit-image, scikit-learn and
matplotlib (no download): JPEG crops plus a labels CSV, for tests, benchmarks and the docs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance

from semcontrib.training.augmentation import AugmentConfig, crop_box

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- sample data


def _photo(source: str, name: str) -> np.ndarray:
    """A bundled photograph as uint8 HxWx3 (greyscale replicated)."""
    if source == "skimage":
        import skimage.data

        img = getattr(skimage.data, name)()
        if isinstance(img, tuple):  # stereo_motorcycle -> (left, right, disparity)
            img = img[0]
    elif source == "sklearn":
        from sklearn.datasets import load_sample_image

        img = load_sample_image(name)
    elif source == "matplotlib":
        from matplotlib import cbook

        f = cbook.get_sample_data(name, asfileobj=True)
        try:
            img = np.asarray(Image.open(f).convert("RGB"))  # type: ignore[arg-type]
        finally:
            f.close()  # type: ignore[union-attr]
    else:
        raise ValueError(f"unknown photo source {source!r}; use skimage, sklearn or matplotlib")
    img = np.asarray(img)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    return np.ascontiguousarray(img[:, :, :3]).astype(np.uint8)


def build_sample_dataset(out: str | Path, variants: int = 5, seed: int = 0, max_side: int = 320,
                         labels_csv: str | Path | None = None) -> tuple[Path, Path]:
    """A small labelled set from the photographs bundled with scikit-image, scikit-learn and matplotlib.

    Each photograph of ``data/train_photos.csv`` (labels in ``data/train_labels.csv``) gives
    ``variants`` JPEG files ``<id>_vNN.jpg``: a random crop (40-100 % of the area), a random flip
    and a small colour change, at most ``max_side`` pixels on a side. Greyscale photographs stay
    greyscale files.

    Returns
    -------
    (images folder, labels CSV) under ``out``; the CSV has one row per variant.
    """
    import pandas as pd

    from semcontrib.paths import data_path

    if variants < 1:
        raise ValueError(f"variants must be >= 1, got {variants}")
    out = Path(out)
    folder = out / "images"
    folder.mkdir(parents=True, exist_ok=True)
    photos = pd.read_csv(data_path("train_photos.csv"), dtype=str, keep_default_na=False)
    labels = pd.read_csv(labels_csv or data_path("train_labels.csv"), dtype=str, keep_default_na=False)
    by_id = labels.set_index("image_id")
    cfg = AugmentConfig(scale=(0.4, 1.0), brightness=0.15, contrast=0.15, saturation=0.15, hue=0.0)
    rows = []
    for k, ph in enumerate(photos.itertuples(index=False)):
        rgb = _photo(str(ph.source), str(ph.name))
        grey = bool(np.all(rgb[..., 0] == rgb[..., 1]) and np.all(rgb[..., 1] == rgb[..., 2]))
        rng = np.random.default_rng([seed, k])
        h, w = rgb.shape[:2]
        for v in range(variants):
            top, left, ch, cw = crop_box(h, w, cfg, rng)
            crop = rgb[top:top + ch, left:left + cw]
            scale = min(1.0, max_side / max(crop.shape[:2]))
            size = (max(8, int(round(crop.shape[1] * scale))), max(8, int(round(crop.shape[0] * scale))))
            img = Image.fromarray(np.ascontiguousarray(crop)).resize(size, Image.Resampling.BICUBIC)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.85, 1.15)))
            if grey:
                img = img.convert("L")
            vid = f"{ph.image_id}_v{v:02d}"
            img.save(folder / f"{vid}.jpg", quality=90)
            rows.append({"image_id": vid, **by_id.loc[str(ph.image_id)].to_dict()})
    csv = out / "labels.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return folder, csv
