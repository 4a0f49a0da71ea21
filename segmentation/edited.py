"""The edited source: another region source's maps, overridden by the region edits people drew.

:class:`EditedSource` wraps a base source (``grid``, ``landscape``, ``sam``, ``annotations:``) and the
edits of :mod:`semcontrib.edits`. An image without edits gets the base map unchanged; an edited image
gets the base map with each edit painted over it in order (pixels whose centre lies in the polygon
take the edit's label; ``inside`` limits an edit to pixels already carrying that label; the label
``unassigned`` erases).

Vocabulary
----------
The base vocabulary, then the edit labels it lacks, sorted, appended at the end (``unassigned`` is
never a name). Appending keeps every base label's index, so a base map is a valid map of the edited
vocabulary. A new label still changes the vocabulary, hence the region key: every image's
contribution vector gains that dimension (zero where nobody drew it). The base region maps are reused
(see :meth:`EditedSource.image_identity`), and so are the stored pixel methods' statistics of the
images whose map did not change (a zero row appended for each new label); region methods' scores and
the validity records (whose key holds the vocabulary) are computed again for every image.

Keys
----
``cache_identity`` is the base's (the vocabulary enters the key as it does for every source), so
edits with labels the vocabulary has do not change the region key. What each image's edits do is
:meth:`EditedSource.image_identity`; the pipeline folds the identities of a chunk's images into that
chunk's region key, so only the chunks holding edited images are segmented again; within them, the
engine keeps every stored work of an image whose own map is unchanged (each work file records a digest
per image), so only the edited images are attributed and validated again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.edits import ERASE_LABEL, RegionEdit, edits_digest, edits_path, read_edits
from semcontrib.regions import (
    UNASSIGNED,
    ImageInput,
    RegionMap,
    RegionSource,
    cache_identity,
    is_cheap,
    uses_evidence,
)
from semcontrib.segmentation.annotations import check_size, polygons_to_mask

logger = logging.getLogger(__name__)


def edited_vocabulary(base: Sequence[str], edits: Sequence[RegionEdit]) -> tuple[str, ...]:
    """The base vocabulary, then the edit labels it lacks (sorted); ``unassigned`` is never a name.

    >>> from semcontrib.edits import make_edit
    >>> e = make_edit(image_id="a", file_name="a.jpg", width=2, height=2, label="eyes",
    ...               polygon=[[0, 0], [1, 0], [1, 1]])
    >>> edited_vocabulary(("sky", "water"), [e])
    ('sky', 'water', 'eyes')
    """
    have = set(base)
    extra = sorted({e.label for e in edits} - have - {ERASE_LABEL})
    return (*tuple(base), *extra)


def apply_edits(labels: np.ndarray, vocabulary: Sequence[str], edits: Sequence[RegionEdit]) -> np.ndarray:
    """A copy of the int32 HxW label map ``labels`` (indices into ``vocabulary``, -1 unassigned) with
    ``edits`` painted over it in order.

    Each edit's pixels are those whose centre lies in its polygon, and (with ``inside``) that carry the
    label ``inside`` when the edit applies (none when the vocabulary lacks it). They take the edit's
    label (``unassigned``: -1). ``ValueError`` when an edit's label is not in ``vocabulary``.

    >>> from semcontrib.edits import make_edit
    >>> lab = np.array([[0, 0, 1], [0, 1, 1]], np.int32)
    >>> box = [[0, 0], [2, 0], [2, 2], [0, 2]]  # the left 2 columns
    >>> e = make_edit(image_id="a", file_name="a.jpg", width=3, height=2, label="eyes", polygon=box, inside="b")
    >>> apply_edits(lab, ("a", "b", "eyes"), [e]).tolist()
    [[0, 0, 1], [0, 2, 1]]
    """
    out = np.array(labels, dtype=np.int32, copy=True)
    h, w = out.shape
    index = {n: k for k, n in enumerate(vocabulary)}
    for e in edits:
        if e.label != ERASE_LABEL and e.label not in index:
            raise ValueError(f"edit {e.edit_id}: label {e.label!r} is not in the vocabulary")
        mask = polygons_to_mask([np.asarray(e.polygon, np.float64)], h, w)
        if e.inside is not None:
            mask &= out == index.get(e.inside, -2)
        out[mask] = UNASSIGNED if e.label == ERASE_LABEL else index[e.label]
    return out


def _keys(name: str) -> list[str]:
    base = os.path.basename(str(name))
    return [base, os.path.splitext(base)[0]] if base else []


class EditedSource:
    """A base region source with region edits painted over its maps (module docstring).

    Parameters
    ----------
    base : the region source whose maps are edited.
    edits : the edits, in the order they apply.
    path : where they came from (recorded in ``params``).

    Images are matched to edits by corpus image id first, then by file name (basename or stem) of
    ``ImageInput.path``. An edit made on an image of another size raises a permanent
    :class:`~semcontrib.regions.RegionError` for that image (as an annotation of the wrong size does).
    """

    def __init__(self, base: RegionSource, edits: Sequence[RegionEdit], path: str | os.PathLike[str] = "") -> None:
        self.base = base
        self.name = base.name
        self.uses_evidence = uses_evidence(base)
        self.uses_torch = bool(getattr(base, "uses_torch", False))  # as the source it edits
        self.cheap = is_cheap(base)  # painting polygons costs little more than the base's maps
        self.path = str(path)
        self.edits = tuple(edits)
        self._vocabulary = edited_vocabulary(tuple(base.vocabulary), self.edits)
        self._by_id: dict[str, list[RegionEdit]] = {}
        self._by_name: dict[str, list[RegionEdit]] = {}
        for e in self.edits:
            self._by_id.setdefault(e.image_id, []).append(e)
            for k in _keys(e.file_name):
                self._by_name.setdefault(k, []).append(e)

    @property
    def vocabulary(self) -> tuple[str, ...]:
        return self._vocabulary

    @property
    def params(self) -> dict[str, Any]:
        return {**dict(self.base.params), "edits": {"path": self.path, "n_edits": len(self.edits),
                                                    "digest": edits_digest(self.edits)}}

    @property
    def cache_identity(self) -> dict[str, Any]:
        """The base's identity: the edits enter the region keys per chunk (:meth:`image_identity`)."""
        return cache_identity(self.base)

    def edits_for(self, image_id: str, path: str = "") -> list[RegionEdit]:
        """The edits of one image, in order (by corpus id, else by file name)."""
        if image_id in self._by_id:
            return self._by_id[image_id]
        for k in _keys(path):
            if k in self._by_name:
                return self._by_name[k]
        return []

    def image_identity(self, image_id: str, path: str = "") -> str:
        """``""`` for an image without edits (its map is the base's), else a hash of what its edits do."""
        edits = self.edits_for(image_id, path)
        return edits_digest(edits) if edits else ""

    def segment(self, image: ImageInput) -> RegionMap:
        rmap = self.base.segment(image)
        edits = self.edits_for(image.image_id, image.path)
        if not edits:
            return RegionMap(rmap.labels, self._vocabulary)
        for e in edits:
            check_size(image, (e.height, e.width), rmap.shape, self.path or "region edits")
        return RegionMap(apply_edits(rmap.labels, self._vocabulary, edits), self._vocabulary)


def with_edits(base: RegionSource, corpus: str | os.PathLike[str]) -> RegionSource:
    """``base`` with the corpus's region edits (``CORPUS/annotations/edits.json``) applied, or ``base``
    itself when the corpus has none. ``ValueError`` when the edits file is malformed."""
    if isinstance(base, EditedSource):
        return base
    path = edits_path(Path(corpus))
    edits = read_edits(path)
    if not edits:
        return base
    logger.info("applying %d region edit(s) from %s", len(edits), path)
    return EditedSource(base, edits, path)
