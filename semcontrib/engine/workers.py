"""Per-image work of an analysis run, in worker processes that never import torch.

Decoding an image, making its display JPEG and running a region source on it need no model, so
:class:`~semcontrib.pipeline.AnalysisRun` runs them in ``--workers`` spawned processes beside the model.
This module and what it imports (Pillow, NumPy, the corpus's records, the region protocol) are
torch-free, so a worker starts in a fraction of a second instead of the 2-3 s an import of torch
takes. A region source that needs torch (SAM, concept segmenters) imports it in its own module and
says so with ``uses_torch = True``; its workers then import torch and run it with one thread each.
``workers == 0`` runs the same functions in the calling process.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.corpus import ImageRecord, RegionWork
from semcontrib.imageio import ImageLoadError, load_rgb, resize_rgb
from semcontrib.regions import ImageInput, RegionSource, is_cheap, resize_evidence

logger = logging.getLogger(__name__)

DISPLAY_MAX_SIDE = 512


def path_text(path: Path) -> str:
    """A file name as UTF-8-safe text: undecodable bytes become ``\\xNN`` escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _one_line(exc: BaseException) -> str:
    """An exception as one line of valid UTF-8 text (undecodable file-name bytes escaped), at most 500 long."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return _utf8(text[:500])


def _utf8(text: str) -> str:
    """``text`` with lone surrogates (undecodable bytes of file names) as ``\\udcNN`` escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclass(frozen=True)
class PrepareJob:
    """Decode one image: its record and display JPEG, its pixels at model resolution, and (for region
    sources that do not read the classifier's evidence) its region map."""

    image_id: str
    path: Path
    size: int
    display: bool
    segment: bool


@dataclass(frozen=True)
class Prepared:
    """What :func:`prepare_image` gives back: ``rgb`` uint8 S×S×3 (None when the image is skipped)."""

    image_id: str
    record: ImageRecord
    display_jpeg: bytes = b""
    rgb: np.ndarray | None = None
    regions: RegionWork | None = None


@dataclass(frozen=True)
class SegmentJob:
    """Segment one image with the classifier's class evidence (G×h×w, or None)."""

    image_id: str
    path: Path
    evidence: np.ndarray | None


@dataclass(frozen=True)
class RegionContext:
    """What region work needs besides the image: the source, its vocabulary, the evidence groups and S."""

    source: RegionSource
    vocabulary: tuple[str, ...]
    groups: tuple[str, ...]
    size: int


_WORKER: dict[str, RegionContext] = {}


def _init_worker(context: RegionContext) -> None:
    """Set up a worker process. It never imports torch itself; a region source that needs it (its
    ``uses_torch`` is true, or unpickling it imported torch) runs with one torch thread per worker."""
    logging.basicConfig(level=logging.WARNING)
    if getattr(context.source, "uses_torch", False) or "torch" in sys.modules:
        import torch

        torch.set_num_threads(1)
    _WORKER["context"] = context


def _decode(path: Path) -> Any:
    try:
        return load_rgb(path)
    except ImageLoadError:
        raise
    except Exception as exc:  # any decoder failure is this image's reason, never the run's end
        raise ImageLoadError(path, f"unreadable image ({type(exc).__name__}: {exc})") from None


def prepare_image(job: PrepareJob, context: RegionContext | None = None) -> Prepared:
    """Decode one image (in a worker process, or inline with ``context``)."""
    ctx = context or _WORKER["context"]
    try:
        loaded = _decode(job.path)
    except ImageLoadError as exc:
        return Prepared(job.image_id, ImageRecord(0, 0, "", "skipped", exc.reason))
    h, w = loaded.rgb.shape[:2]
    jpeg = b""
    if job.display:
        img = Image.fromarray(loaded.rgb)
        img.thumbnail((DISPLAY_MAX_SIDE, DISPLAY_MAX_SIDE), Image.Resampling.LANCZOS)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        jpeg = buf.getvalue()
    regions = segment_rgb(ctx, job.image_id, job.path, loaded.rgb, None) if job.segment else None
    return Prepared(job.image_id, ImageRecord(w, h, loaded.original_mode), jpeg,
                    resize_rgb(loaded.rgb, job.size), regions)


def segment_image(job: SegmentJob, context: RegionContext | None = None) -> RegionWork:
    """Decode and segment one image (in a worker process, or inline with ``context``)."""
    ctx = context or _WORKER["context"]
    try:
        loaded = _decode(job.path)
    except ImageLoadError as exc:
        return RegionWork(None, f"image: {exc.reason}", permanent=False)
    return segment_rgb(ctx, job.image_id, job.path, loaded.rgb, job.evidence)


def segment_rgb(ctx: RegionContext, image_id: str, path: Path, rgb: np.ndarray, evidence: np.ndarray | None
                ) -> RegionWork:
    """The region map of one decoded image at model resolution, or the failure (permanent or not)."""
    ev = resize_evidence(evidence, list(ctx.groups), rgb.shape[:2])
    try:
        rmap = ctx.source.segment(ImageInput(image_id, rgb, str(path), ev))
        if tuple(rmap.names) != ctx.vocabulary:
            raise ValueError(f"region source returned vocabulary {rmap.names}, expected {ctx.vocabulary}")
        if rmap.shape != tuple(rgb.shape[:2]):
            raise ValueError(f"region map is {rmap.shape}, image is {rgb.shape[:2]}")
        return RegionWork(rmap.resized((ctx.size, ctx.size)).labels.astype(np.int16), rmap.note)
    except OSError as exc:
        if cstore.is_disk_full(exc):
            raise
        logger.warning("regions failed for %s (will retry next run): %s", path_text(path), exc)
        return RegionWork(None, _one_line(exc), permanent=False)
    except Exception as exc:  # a region source failing on one image is that image's reason
        # RegionError says whether the input itself causes it; another ValueError is taken as
        # caused by the input; anything else is unexpected and retried by the next run
        permanent = bool(getattr(exc, "permanent", isinstance(exc, ValueError)))
        logger.warning("regions failed for %s%s: %s", path_text(path), "" if permanent else " (will retry next run)",
                       exc)
        return RegionWork(None, _one_line(exc), permanent=permanent)


CHEAP_RUN_CHUNKS = 4  # a run of fewer chunks to compute starts no pool for a cheap region source


def pool_workers(workers: int, source: RegionSource, chunks: int) -> int:
    """The worker processes worth starting for a run that computes ``chunks`` chunks: ``workers``, or none
    (everything inline) when the region source is cheap (``cheap = True``: a grid, a few milliseconds per
    image) and the run computes fewer than :data:`CHEAP_RUN_CHUNKS` chunks. Starting the pool costs about
    0.4 s, more than a cheap source's work on a small run could give back (``docs/scaling.md``, "Worker
    processes"). Sources that segment while the model works keep their workers.

    Examples
    --------
    >>> class Cheap:
    ...     cheap = True
    >>> pool_workers(2, Cheap(), 1), pool_workers(2, Cheap(), CHEAP_RUN_CHUNKS), pool_workers(2, object(), 1)
    (0, 2, 2)
    """
    if workers > 0 and is_cheap(source) and chunks < CHEAP_RUN_CHUNKS:
        return 0
    return workers


class Executor:
    """Runs per-image jobs inline (``workers == 0``) or in a pool of worker processes (spawned, so the
    model's threads are never forked), giving back futures-like handles in submission order."""

    def __init__(self, workers: int, context: RegionContext) -> None:
        self.context = context
        self.pool: ProcessPoolExecutor | None = None
        if workers > 0:
            self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_init_worker, initargs=(context,))

    def submit(self, fn: Callable[..., Any], job: Any) -> Any:
        if self.pool is None:
            return Done(fn(job, self.context))
        return self.pool.submit(fn, job)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


@dataclass
class Done:
    """A job's result already at hand, with the ``result()`` of a future."""

    value: Any

    def result(self) -> Any:
        return self.value


_Executor = Executor  # the old private names (tests, one release)
_Done = Done
