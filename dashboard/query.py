"""The one module of the dashboard that reads the corpus (read-only).

:class:`CorpusQuery` wraps :class:`semcontrib.corpus.Corpus` and caches what the views need per view
key (score matrices per head, method and normalisation; embeddings by a hash of their inputs, on disk).
Images are found by image id only: an id from a request is looked up among the corpus's ids, and only
the stored id (never the request's string) is used to locate files.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from semcontrib.contributions import NORMALISATIONS
from semcontrib.corpus import Corpus
from semcontrib.dashboard import overlay, views

logger = logging.getLogger(__name__)


class CorpusQuery:
    """Read access for the dashboard; one per app.

    Parameters
    ----------
    corpus_path : a corpus directory (see ``semcontrib.corpus``).
    cache_dir : where embeddings are cached (a ``diskcache`` directory), or None for no disk cache.
    """

    def __init__(self, corpus_path: str | Path, cache_dir: str | Path | None = None) -> None:
        self._args = (str(corpus_path), None if cache_dir is None else str(cache_dir))
        self.corpus = Corpus.open(corpus_path)
        self.root = self.corpus.root
        images = self.corpus.images
        self.images: pd.DataFrame = images[images["status"] == "ok"].reset_index(drop=True)
        self.ids: np.ndarray = self.images["image_id"].astype(str).to_numpy(dtype=object)
        self.index: dict[str, int] = {str(i): k for k, i in enumerate(self.ids)}
        self.n_skipped = int((images["status"] != "ok").sum())
        self._cache: Any = None
        if cache_dir is not None:
            import diskcache

            self._cache = diskcache.Cache(str(Path(cache_dir) / "embeddings"))
        self.score_matrix = lru_cache(maxsize=32)(self._score_matrix)
        self.overlay_png = lru_cache(maxsize=256)(self._overlay_png)

    def __getstate__(self) -> dict[str, Any]:
        """Background jobs run in spawned processes; they re-open the corpus from its path."""
        return {"args": self._args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(*state["args"])  # type: ignore[misc]

    # ---- metadata
    @property
    def key(self) -> str:
        """Identifies this corpus's content for caches (manifest keys and table sizes)."""
        m = self.corpus.manifest
        return f"{m.get('model', {}).get('key')}|{m['regions'].get('key')}|{len(self.ids)}|" + \
            "|".join(f"{k}:{v.get('key')}" for k, v in m["methods"].items())

    @property
    def heads(self) -> dict[str, list[str]]:
        return {h: self.corpus.classes(h) for h in self.corpus.heads}

    @property
    def methods(self) -> list[str]:
        return self.corpus.methods

    @property
    def vocabulary(self) -> list[str]:
        return self.corpus.vocabulary

    @property
    def normalisations(self) -> tuple[str, ...]:
        return NORMALISATIONS

    def check_view(self, head: str, method: str, normalisation: str) -> None:
        if head not in self.heads:
            raise ValueError(f"unknown head {head!r}; corpus has {list(self.heads)}")
        if method not in self.methods:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {normalisation!r}; allowed: {NORMALISATIONS}")

    # ---- scores
    def _score_matrix(self, head: str, method: str, normalisation: str) -> views.ScoreMatrix:
        self.check_view(head, method, normalisation)
        wide = self.corpus.contribution_table(head, method, normalisation, wide=True)
        return views.score_matrix(wide, list(self.ids), self.vocabulary)

    def predictions(self, head: str) -> np.ndarray:
        """object (N,): the predicted class of ``head`` per image (corpus order)."""
        return self.images[f"pred_{head}"].fillna("").astype(str).to_numpy(dtype=object)

    def probabilities(self, head: str) -> np.ndarray:
        return self.images[f"prob_{head}"].to_numpy(dtype=np.float64)

    def contribution_table(self, head: str, method: str, normalisation: str, image_ids: Sequence[str],
                           wide: bool = False) -> pd.DataFrame:
        """The export table: raw statistics and scores of ``image_ids`` (corpus order)."""
        self.check_view(head, method, normalisation)
        return self.corpus.contribution_table(head, method, normalisation, wide=wide, image_ids=list(image_ids))

    # ---- embedding
    def embedding(self, head: str, method: str, normalisation: str, algorithm: str,
                  weights: Mapping[str, float | None] | None, progress: Callable[[str], None] | None = None
                  ) -> tuple[str, np.ndarray]:
        """(cache key, float64 N x 2) by weighted cosine; cached on disk by a hash of the inputs."""
        matrix = self.score_matrix(head, method, normalisation)
        w = views.column_weights(matrix, self.vocabulary, weights)
        key = views.embedding_key(self.key, head, method, normalisation, algorithm, w)
        if self._cache is not None and key in self._cache:
            return key, np.asarray(self._cache[key])
        Y = views.embed(views.embedding_input(matrix, w), algorithm, progress=progress)
        if self._cache is not None:
            self._cache[key] = Y
        return key, Y

    # ---- images, by id only
    def known_id(self, image_id: object) -> str | None:
        """The stored id equal to ``image_id``, or None when the corpus has no such image."""
        k = self.index.get(image_id) if isinstance(image_id, str) else None
        return None if k is None else str(self.ids[k])

    def photo_jpeg(self, image_id: str) -> bytes | None:
        stored = self.known_id(image_id)
        path = self.corpus.display_path(stored) if stored else None
        return path.read_bytes() if path else None

    def thumbnail(self, image_id: str) -> bytes | None:
        jpeg = self.photo_jpeg(image_id)
        return overlay.jpeg_thumbnail(jpeg) if jpeg else None

    def attribution_map(self, image_id: str, head: str, method: str) -> np.ndarray | None:
        stored = self.known_id(image_id)
        if stored is None or head not in self.heads or method not in self.methods:
            return None
        return self.corpus.attribution_map(stored, head, method)

    def region_labels(self, image_id: str) -> np.ndarray | None:
        stored = self.known_id(image_id)
        rm = self.corpus.region_map(stored) if stored else None
        return None if rm is None else rm.labels

    def _overlay_png(self, image_id: str, head: str, method: str) -> bytes | None:
        jpeg = self.photo_jpeg(image_id)
        if jpeg is None:
            return None
        photo = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
        return overlay.png_bytes(overlay.overlay_rgb(photo, self.attribution_map(image_id, head, method),
                                                     self.region_labels(image_id)))

    def image_vectors(self, image_id: str, normalisation: str) -> dict[tuple[str, str], np.ndarray]:
        """(head, method) -> score vector (C,) of one image, for every head and method it has."""
        k = self.index[image_id]
        out = {}
        for h in self.heads:
            for m in self.methods:
                v = self.score_matrix(h, m, normalisation).values[k]
                if not np.isnan(v).any():
                    out[(h, m)] = v
        return out
