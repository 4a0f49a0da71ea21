"""Backbone features of every image, cached on disk: the frozen-backbone path of training.

``extract_features`` runs the backbone once per image and view (view 0: the squashed image; views
1..V: augmented) and stores ``cache_dir/<backbone key>/<views key>/<file sha256>.npy``. The backbone
key (:func:`backbone_key`) covers the backbone weights, preprocessing and output shape.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from semcontrib.model import MultitaskModel, SiamModel
from semcontrib.training.augmentation import AugmentConfig, augment_rgb

logger = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""``progress(stage, done, total)``: called as work advances (stage: ``"features"``, ``"epochs"``...)."""


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureSet:
    """Backbone features of every example, un-augmented and augmented.

    Attributes
    ----------
    features : float32 N x (1 + V) x F (pooled features) or N x (1 + V) x F x h x w (the feature
        map, for a :class:`~semcontrib.model.SiamModel`); view 0 is the plain (squashed) image,
        views 1..V are augmented. Rows of unreadable images are zero.
    ok : bool N, False where the image could not be read.
    file_hashes : N sha256 of the image files ("" where unreadable).
    reasons : index -> why the image could not be read.
    key : identity of the backbone weights and view settings (the cache key).
    """

    features: np.ndarray
    ok: np.ndarray
    file_hashes: list[str]
    reasons: dict[int, str]
    key: str


def backbone_key(model: MultitaskModel) -> str:
    """sha256 of the backbone's weights and the preprocessing (16 hex digits)."""
    h = hashlib.sha256()
    ident = [model.spec.name, model.input_size, list(model.spec.mean), list(model.spec.std),
             list(backbone_output_shape(model))]
    h.update(json.dumps(ident).encode())
    for name, t in sorted(model.backbone.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def backbone_output_shape(model: MultitaskModel) -> tuple[int, ...]:
    """Shape of ``model.backbone``'s output per image: (F,) pooled, or (F, h, w) for a SIAM model."""
    if isinstance(model, SiamModel):
        return (model.heads.concept_conv.in_channels, *model.heads.map_size)
    return (model.spec.feature_dim,)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _views_key(n_views: int, seed: int, augment: AugmentConfig) -> str:
    blob = json.dumps({"n_views": n_views, "seed": seed, "augment": asdict(augment), "v": 1}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def atomic_save(path: Path, arr: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename: readers never see a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npy")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def image_views(rgb: np.ndarray, size: int, n_views: int, rng: np.random.Generator,
                augment: AugmentConfig) -> np.ndarray:
    """uint8 HxWx3 -> uint8 (1 + n_views) x size x size x 3: the squashed image, then augmented views."""
    from semcontrib.imageio import resize_rgb

    views = [resize_rgb(rgb, size)]
    views.extend(augment_rgb(rgb, size, rng, augment) for _ in range(n_views))
    return np.stack(views)


def to_tensor(model: MultitaskModel, batch: np.ndarray, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 N x S x S x 3 -> normalised float N x 3 x S x S (on ``device``; default the model's)."""
    dev = torch.device(device) if device is not None else model_device(model)
    t = torch.from_numpy(np.ascontiguousarray(batch)).to(dev).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(model.spec.mean, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(model.spec.std, device=dev).view(1, 3, 1, 1)
    return (t - mean) / std


class _ImageViews(torch.utils.data.Dataset):
    """Item ``i`` -> (i, file sha256, kind, payload): ``("cached", float32 (1+V) x ...)``,
    ``("views", uint8 (1+V) x S x S x 3)`` or ``("error", reason)``. Runs in DataLoader workers."""

    def __init__(self, paths: Sequence[Path], cache: Path | None, n_views: int, seed: int,
                 augment: AugmentConfig, size_and_shape: tuple[int, tuple[int, ...]]) -> None:
        self.paths, self.cache, self.n_views, self.seed, self.augment = paths, cache, n_views, seed, augment
        self.size, self.shape = size_and_shape

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[int, str, str, Any]:
        from semcontrib.imageio import ImageLoadError, load_rgb, sha256_file

        p = self.paths[i]
        try:
            digest = sha256_file(p)
        except OSError as exc:
            return i, "", "error", f"unreadable: {exc}"
        if self.cache is not None:
            cached = self.cache / f"{digest}.npy"
            if cached.is_file():
                try:
                    arr = np.load(cached)
                    if arr.shape == (1 + self.n_views, *self.shape):
                        return i, digest, "cached", arr
                except (OSError, ValueError):
                    logger.warning("ignoring corrupt cache file %s", cached)
        try:
            rgb = load_rgb(p).rgb
        except ImageLoadError as exc:
            return i, "", "error", exc.reason
        rng = np.random.default_rng([self.seed, int(digest[:15], 16)])
        return i, digest, "views", image_views(rgb, self.size, self.n_views, rng, self.augment)


def _as_is(item: Any) -> Any:
    return item


@dataclass(frozen=True)
class FeatureJob:
    """How :func:`extract_features` works: the views it draws and how it reads and batches images.

    Attributes
    ----------
    n_views : augmented views per image (besides the plain view 0).
    seed : seeds each image's views (with the file's sha256).
    augment : the augmentation (default ``AugmentConfig()``).
    batch_size : views per forward.
    cache_dir : where features are cached, or None.
    workers : DataLoader processes that hash, decode and augment images.
    """

    n_views: int = 4
    seed: int = 0
    augment: AugmentConfig | None = None
    batch_size: int = 32
    cache_dir: str | Path | None = None
    workers: int = 0


def extract_features(model: MultitaskModel, paths: Sequence[Path], job: FeatureJob | None = None,
                     progress: Progress | None = None, **kw: Any) -> FeatureSet:
    """Backbone features of each image and of ``n_views`` augmented views of it.

    ``job`` says how (:class:`FeatureJob`; its fields may also be given as keywords).

    The views of an image are drawn from a generator seeded by (``seed``, the file's sha256), so
    they do not depend on the order of the files (nor on ``workers``, the DataLoader processes
    that hash, decode and augment the images while the model runs on the model's device). With
    ``cache_dir``, each image's features are stored as
    ``cache_dir/<backbone key>/<views key>/<file sha256>.npy`` (float32 (1 + V) x F) and read back
    on the next run.

    Returns
    -------
    FeatureSet
        ``features`` float32 N x (1 + n_views) x F (N x (1 + n_views) x F x h x w for SIAM).
    """
    job = replace(job or FeatureJob(), **kw)
    if job.n_views < 0:
        raise ValueError(f"n_views must be >= 0, got {job.n_views}")
    if job.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {job.batch_size}")
    if job.workers < 0:
        raise ValueError(f"workers must be >= 0, got {job.workers}")
    augment = job.augment or AugmentConfig()
    key = f"{backbone_key(model)}/{_views_key(job.n_views, job.seed, augment)}"
    cache = Path(job.cache_dir) / key if job.cache_dir is not None else None
    collected = _Collector(model, len(paths), job, cache, progress)
    dataset = _ImageViews(paths, cache, job.n_views, job.seed, augment, (model.input_size, collected.shape))
    items: Any = (dataset if job.workers == 0 else
                  torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=job.workers,
                                              collate_fn=_as_is))
    was_training = model.training
    model.eval()
    try:
        for i, digest, kind, payload in items:
            collected.take(i, digest, kind, payload)
        collected.flush()
    finally:
        model.train(was_training)
    return FeatureSet(collected.feats, collected.ok, collected.hashes, collected.reasons, key)


class _Collector:
    """The features of :func:`extract_features` as its items arrive: cached features as they are, decoded
    views in batches of at least ``job.batch_size`` images through the backbone (then cached)."""

    def __init__(self, model: MultitaskModel, n: int, job: FeatureJob, cache: Path | None,
                 progress: Progress | None) -> None:
        self.model, self.n, self.job, self.cache, self.progress = model, n, job, cache, progress
        self.shape = backbone_output_shape(model)
        self.feats = np.zeros((n, 1 + job.n_views, *self.shape), dtype=np.float32)
        self.ok = np.zeros(n, dtype=bool)
        self.hashes = [""] * n
        self.reasons: dict[int, str] = {}
        self.pending: list[tuple[int, np.ndarray]] = []  # (example index, views uint8 (1+V) x S x S x 3)
        self.done = 0

    def take(self, i: int, digest: str, kind: str, payload: Any) -> None:
        """One item of :class:`_ImageViews`: an ``error`` reason, ``cached`` features or decoded ``views``."""
        self.hashes[i] = digest
        if kind == "error":
            self.reasons[i] = payload
            self.done += 1
        elif kind == "cached":
            self.feats[i] = payload
            self.ok[i] = True
            self.done += 1
            if self.progress:
                self.progress("features", self.done, self.n)
        else:
            self.pending.append((i, payload))
            if sum(len(v) for _, v in self.pending) >= self.job.batch_size:
                self.flush()

    def flush(self) -> None:
        """Run the pending views through the backbone; store (and cache) their features."""
        if not self.pending:
            return
        batch = np.concatenate([v for _, v in self.pending])
        with torch.inference_mode():
            out = self.model.backbone(to_tensor(self.model, batch)).float().cpu().numpy()
        out = out.reshape(len(self.pending), 1 + self.job.n_views, *self.shape)
        for (i, _), f in zip(self.pending, out):
            self.feats[i] = f
            self.ok[i] = True
            if self.cache is not None:
                atomic_save(self.cache / f"{self.hashes[i]}.npy", f)
        self.done += len(self.pending)
        self.pending.clear()
        if self.progress:
            self.progress("features", self.done, self.n)
