"""The one module of the dashboard that reads the corpus (read-only), and keeps the dashboard's cache.

:class:`CorpusQuery` wraps :class:`semcontrib.corpus.Corpus` and caches what the views need per view
(score matrices per head, method, normalisation and basis; the ranked-table frame; the trust table).
Embeddings are cached in the corpus folder (``CORPUS/dashboard/embeddings/``, written with the corpus's
atomic writers) under a hash of what they depend on, so a restarted dashboard shows its last embedding
at once, and images added to the corpus later are placed into the stored map instead of recomputing it.

Images are found by image id only: an id from a request is looked up among the corpus's ids, and only the
stored id (never the request's string) is passed on to :meth:`semcontrib.corpus.Corpus.display_jpeg`, which
reads the photo from the chunk file the images table names, inside the corpus's store (a symlinked chunk
file is refused).
"""

from __future__ import annotations

import io
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.contributions import BASES, NORMALISATIONS
from semcontrib.corpus import Corpus
from semcontrib.dashboard import embedding, overlay, views
from semcontrib.dashboard.records import Filters, View, Weights
from semcontrib.export import csv_bytes

logger = logging.getLogger(__name__)

# Inside the corpus's dashboard cache folder (``semcontrib.corpus.StorePaths.dashboard_cache``).
_EMBEDDINGS_DIR = "embeddings"
_LAST = "last-embedding.json"
_SESSION = "session.json"  # next to the embeddings folder: CORPUS/dashboard/session.json
EMBED_VERSION = 2
VALIDITY_COLUMNS = ("faithfulness", "deletion_auc", "insertion_auc", "lerf_auc", "random_auc")


@dataclass(frozen=True)
class EmbeddingSpec:
    """What an embedding depends on, and where it is cached.

    Attributes
    ----------
    view, algorithm : the scores embedded and the method.
    weights : region -> weight (every region, default 1).
    key : hash of the parameters (the cache file name); ``content`` : hash of the embedded rows.
    """

    view: View
    algorithm: str
    weights: tuple[tuple[str, float], ...]
    key: str
    content: str

    @property
    def client_key(self) -> str:
        """What the browser stores: identifies both the parameters and the rows."""
        return f"{self.key}-{self.content}"

    def params(self) -> dict[str, Any]:
        v = self.view
        return {"head": v.head, "method": v.method, "normalisation": v.normalisation, "basis": v.basis,
                "algorithm": self.algorithm, "weights": dict(self.weights)}


class CorpusQuery:
    """Read access for the dashboard; one per app.

    Parameters
    ----------
    corpus_path : a corpus directory (see ``semcontrib.corpus``).
    cache_dir : where embeddings are cached; default ``CORPUS/dashboard/embeddings``.
    """

    def __init__(self, corpus_path: str | Path, cache_dir: str | Path | None = None) -> None:
        self._args = (str(corpus_path), None if cache_dir is None else str(cache_dir))
        self.corpus = Corpus.open(corpus_path)
        self.root = self.corpus.root
        images = self.corpus.images
        self.all_images = images
        self.images: pd.DataFrame = images[images["status"] == "ok"].reset_index(drop=True)
        self.ids: np.ndarray = self.images["image_id"].astype(str).to_numpy(dtype=object)
        self.index: dict[str, int] = dict(zip(self.ids.tolist(), range(len(self.ids))))  # ids are text already
        self.n_skipped = int((images["status"] != "ok").sum())
        self.cache_dir = Path(cache_dir) if cache_dir else self.corpus.paths.dashboard_cache / _EMBEDDINGS_DIR
        self._embeddings: OrderedDict[str, np.ndarray] = OrderedDict()
        self.score_matrix = lru_cache(maxsize=16)(self._score_matrix)
        self.overlay_png = lru_cache(maxsize=256)(self._overlay_png)
        self.table_frame = lru_cache(maxsize=4)(self._table_frame)
        self.trust = lru_cache(maxsize=4)(self._trust)
        self.validity = lru_cache(maxsize=16)(self._validity)

    def __getstate__(self) -> dict[str, Any]:
        """Background jobs run in spawned processes; they re-open the corpus from its path."""
        return {"args": self._args}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(*state["args"])  # type: ignore[misc]

    # ---- metadata
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
    def label_columns(self) -> list[str]:
        """The images' human-label columns (``label_<task>``: a labels CSV, or ``analyze --labels``)."""
        return [c for c in self.images.columns if str(c).startswith("label_")]

    @property
    def normalisations(self) -> tuple[str, ...]:
        return NORMALISATIONS

    @property
    def bases(self) -> tuple[str, ...]:
        return BASES

    @property
    def is_synthetic(self) -> bool:
        """A corpus written by ``dashboard.synthetic`` (random data, no model)."""
        return bool(self.corpus.manifest.get("synthetic")) or self.corpus.manifest.get("model", {}).get(
            "name") == "synthetic"

    def summary(self) -> dict[str, Any]:
        """What is in this corpus: images analysed and skipped (with reasons), heads, methods, regions."""
        skipped = self.all_images[self.all_images["status"] != "ok"]
        reasons = skipped["reason"].fillna("").astype(str).value_counts().head(10)
        m = self.corpus.manifest
        return {"images": len(self.ids), "skipped": len(skipped),
                "reasons": {str(k) or "(no reason)": int(v) for k, v in reasons.items()},
                "heads": self.heads, "methods": self.methods,
                "regions": str(m.get("regions", {}).get("name")), "vocabulary": self.vocabulary,
                "model": str(m.get("model", {}).get("name")), "synthetic": self.is_synthetic,
                "validity": self.has_validity}

    def check_view(self, view: View) -> None:
        if view.head not in self.heads:
            raise ValueError(f"unknown head {view.head!r}; corpus has {list(self.heads)}")
        if view.method not in self.methods:
            raise ValueError(f"unknown method {view.method!r}; corpus has {self.methods}")
        if view.normalisation not in NORMALISATIONS:
            raise ValueError(f"unknown normalisation {view.normalisation!r}; allowed: {NORMALISATIONS}")
        if view.basis not in BASES:
            raise ValueError(f"unknown basis {view.basis!r}; allowed: {BASES}")

    # ---- scores
    def _score_matrix(self, view: View) -> views.ScoreMatrix:
        """The view's scores, read lazily: the image ids and four raw columns of one head x method partition
        (``Corpus.view_scores``), never the whole contributions table."""
        self.check_view(view)
        scores = self.corpus.view_scores(view.head, view.method, view.normalisation, view.basis)
        if len(scores.image_ids) != len(self.ids) or not (scores.image_ids == self.ids).all():
            raise RuntimeError("the corpus's images changed under the dashboard; restart it")
        return views.ScoreMatrix(self.ids, scores.columns, scores.column_region, scores.values,
                                 ~np.isnan(scores.values).any(axis=1))

    def score_columns(self, view: View) -> tuple[str, ...]:
        """The view's score column names (as ``score_matrix(view).columns``), without reading any scores."""
        self.check_view(view)
        return cstore.score_columns(self.vocabulary, view.normalisation)[0]

    def predictions(self, head: str) -> np.ndarray:
        """object (N,): the predicted class of ``head`` per image (corpus order)."""
        return self._predictions(head)

    @lru_cache(maxsize=16)  # noqa: B019  # one query per app, kept for the app's life
    def _predictions(self, head: str) -> np.ndarray:
        return self.images[f"pred_{head}"].fillna("").astype(str).to_numpy(dtype=object)

    def highlight_mask(self, head: str, classes: Sequence[str]) -> np.ndarray:
        """bool (N,): images whose predicted class of ``head`` is one of ``classes``."""
        codes, names = self._prediction_codes(head)
        table = np.array([c in set(classes) for c in names] + [False], dtype=bool)
        return table[codes]  # a lookup per image (faster than np.isin at 1,000,000 images)

    @lru_cache(maxsize=16)  # noqa: B019  # one query per app, kept for the app's life
    def _prediction_codes(self, head: str) -> tuple[np.ndarray, tuple[str, ...]]:
        codes, names = pd.factorize(pd.Series(self.predictions(head), dtype=object))
        return np.asarray(codes, dtype=np.int64), tuple(str(c) for c in names)

    def slider_bounds(self, view: View) -> dict[str, list[float]]:
        """Score column -> [low, high] slider range in percent, from the data (cached per view)."""
        return self._slider_bounds(view)

    @lru_cache(maxsize=16)  # noqa: B019  # one query per app, kept for the app's life
    def _slider_bounds(self, view: View) -> dict[str, list[float]]:
        matrix = self.score_matrix(view)
        return {c: b.tolist() for c, b in zip(matrix.columns, views.slider_bounds(matrix.values))}

    def probabilities(self, head: str) -> np.ndarray:
        return self.images[f"prob_{head}"].to_numpy(dtype=np.float64)

    def contribution_table(self, view: View, image_ids: Sequence[str], wide: bool = False) -> pd.DataFrame:
        """The export table: raw statistics and scores of ``image_ids`` (corpus order)."""
        self.check_view(view)
        return self.corpus.contribution_table(view.head, view.method, view.normalisation, basis=view.basis,
                                              wide=wide, image_ids=list(image_ids))

    def export_bytes(self, view: View, image_ids: Sequence[str], wide: bool = False, fmt: str = "csv") -> bytes:
        """The export file of ``image_ids``: spreadsheet-safe CSV written by pyarrow.csv
        (``semcontrib.export.csv_bytes``), or Parquet with the raw values."""
        if fmt not in ("csv", "parquet"):
            raise ValueError(f"export format must be 'csv' or 'parquet', got {fmt!r}")
        table = self.contribution_table(view, image_ids, wide=wide)
        if fmt == "csv":
            return csv_bytes(table)
        buf = io.BytesIO()
        table.to_parquet(buf, index=False)
        return buf.getvalue()

    # ---- validity (optional columns of the attributions table)
    @property
    def has_validity(self) -> bool:
        return "faithfulness" in self._attribution_columns

    @property
    def _attribution_columns(self) -> list[str]:
        return self.corpus.attribution_columns

    def _validity(self, head: str, method: str) -> pd.DataFrame | None:
        """One row per corpus image (corpus order): faithfulness, deletion_auc, insertion_auc (NaN where not
        recorded), validity_note; None when the corpus has no validity record."""
        if not self.has_validity:
            return None
        cols = [c for c in (*VALIDITY_COLUMNS, "validity_note") if c in self._attribution_columns]
        sub = self.corpus.attribution_rows(head, method, cols)  # one partition, these columns only
        cols = [c for c in cols if c in sub.columns]
        frame = sub.drop_duplicates("image_id").set_index("image_id")[cols].reindex(list(self.ids))
        for c in VALIDITY_COLUMNS:
            frame[c] = frame[c].astype(np.float64) if c in frame else np.nan
        frame["validity_note"] = frame["validity_note"].fillna("").astype(str) if "validity_note" in frame else ""
        return frame.reset_index()

    def _rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        """int64: the corpus row of each id (-1 for an id the corpus does not have), in one lookup."""
        index = pd.Index(self.ids)
        if len(image_ids) == 0 or not index.is_unique:
            return np.array([self.index.get(i, -1) for i in image_ids], dtype=np.int64)
        return np.asarray(index.get_indexer(pd.Index(np.asarray(image_ids, dtype=object))), dtype=np.int64)

    def target_text(self, view: View) -> str:
        """What the view's scores explain, for chart titles: the one target class when every image of the
        head and method was explained for the same class, else each image's own target (by default its
        predicted class)."""
        return self._target_text(view.head, view.method)

    @lru_cache(maxsize=16)  # noqa: B019  # one query per app, kept for the app's life
    def _target_text(self, head: str, method: str) -> str:
        if "target" not in self._attribution_columns:
            return f"{head}: each image's target class"
        sub = self.corpus.attribution_rows(head, method, ["target"])
        targets = sub["target"].dropna().astype(str).unique()
        if len(targets) == 1:
            return f"{head} target class {targets[0]!r}"
        preds = self.predictions(head)
        rows = self._rows_of(sub["image_id"].astype(str).to_numpy(dtype=object))
        known = rows >= 0
        same = (sub["target"].astype(str).to_numpy()[known] == preds[rows[known]]).mean() if known.any() else 0
        return (f"{head}: each image's predicted class" if same > 0.99
                else f"{head}: each image's target class ({len(targets)} classes)")

    def faithfulness(self, view: View) -> np.ndarray | None:
        """float64 (N,) faithfulness of the view's head and method, or None without a validity record."""
        v = self.validity(view.head, view.method)
        return None if v is None else v["faithfulness"].to_numpy(np.float64)

    def _trust(self, normalisation: str, basis: str) -> pd.DataFrame:
        vectors = {(h, m): self.score_matrix(View(h, m, normalisation, basis)).values
                   for h in self.heads for m in self.methods}
        validity = pd.DataFrame(columns=["head", "method"])
        if self.has_validity:  # the per-view validity frames (read once, cached), not a second read
            frames = [self.validity(h, m).drop(columns="image_id").assign(head=h, method=m)  # type: ignore[union-attr]
                      for h in self.heads for m in self.methods]
            validity = pd.concat(frames, ignore_index=True)
        return views.trust_table(validity, vectors)

    # ---- the ranked table
    def _table_frame(self, view: View) -> pd.DataFrame:
        """One row per corpus image: index, image_id, predictions and probabilities of every head, the
        view's scores and (when recorded) the validity figures."""
        matrix = self.score_matrix(view)
        # text as object columns: pandas 3 would convert each to its str dtype here, and table_order converts
        # them back with to_numpy() on every request (seconds at a million images)
        data: dict[str, Any] = {"index": np.arange(len(self.ids)), "image_id": pd.Series(self.ids, dtype=object)}
        for h in self.heads:
            data[f"pred_{h}"] = pd.Series(self.predictions(h), dtype=object)
            data[f"prob_{h}"] = np.round(self.probabilities(h), 3)
        for c in self.label_columns:  # human labels, to filter and sort by beside the predictions
            data[c] = pd.Series(self.images[c].fillna("").astype(str).to_numpy(dtype=object), dtype=object)
        for j, c in enumerate(matrix.columns):
            data[c] = np.round(matrix.values[:, j] * 100, 2)  # % of the vector, as every score shown
        v = self.validity(view.head, view.method)
        if v is not None:
            for c in VALIDITY_COLUMNS:
                data[c] = np.round(v[c].to_numpy(np.float64), 3)
        return pd.DataFrame(data)

    # ---- embedding
    def embedding_spec(self, view: View, algorithm: str, weights: Mapping[str, float | None] | None
                       ) -> tuple[EmbeddingSpec, np.ndarray]:
        """(the spec, float64 N x C weighted unit rows to embed)."""
        matrix = self.score_matrix(view)
        w = views.column_weights(matrix, self.vocabulary, weights)
        X = views.embedding_input(matrix, w)
        given = dict(weights or {})
        full = tuple((r, 1.0 if given.get(r) is None else float(given[r] or 0.0)) for r in self.vocabulary)
        params = {"head": view.head, "method": view.method, "normalisation": view.normalisation,
                  "basis": view.basis, "algorithm": algorithm, "weights": dict(full), "seed": 0,
                  "version": EMBED_VERSION}
        spec = EmbeddingSpec(view, algorithm, full, views.embedding_key(params), views.content_hash(self.ids, X))
        return spec, X

    def _cache_file(self, key: str) -> Path:
        if not key.isalnum():
            raise ValueError(f"invalid embedding key {key!r}")
        return self.cache_dir / f"{key}.npz"

    def cached_embedding(self, spec: EmbeddingSpec) -> np.ndarray | None:
        """float64 N x 2 when this exact embedding (parameters and rows) is cached, else None."""
        if spec.client_key in self._embeddings:
            return self._embeddings[spec.client_key]
        path = self._cache_file(spec.key)
        if not path.is_file():
            return None
        try:
            z = cstore.read_npz(path)
        except (OSError, ValueError, KeyError) as exc:  # a bad cache file is recomputed
            logger.warning("ignoring unreadable embedding cache %s: %s", path, exc)
            return None
        if str(z.get("content", "")) != spec.content or z["Y"].shape != (len(self.ids), 2):
            return None
        return self._remember(spec.client_key, z["Y"].astype(np.float64))

    def _remember(self, client_key: str, Y: np.ndarray) -> np.ndarray:
        Y.setflags(write=False)  # shared by every callback (and the figures' caches of its extent and bins)
        self._embeddings[client_key] = Y
        self._embeddings.move_to_end(client_key)
        while len(self._embeddings) > 4:
            self._embeddings.popitem(last=False)
        return Y

    def embedding_by_key(self, client_key: Any) -> np.ndarray | None:
        """float64 N x 2 of an embedding this app made or cached, by the key the browser holds."""
        if not isinstance(client_key, str):
            return None
        if client_key in self._embeddings:
            return self._embeddings[client_key]
        key, _, content = client_key.partition("-")
        if not key.isalnum() or not content.isalnum():
            return None
        path = self._cache_file(key)
        if not path.is_file():
            return None
        try:
            z = cstore.read_npz(path)
        except (OSError, ValueError, KeyError):
            return None
        if str(z.get("content", "")) != content or z["Y"].shape != (len(self.ids), 2):
            return None
        return self._remember(client_key, z["Y"].astype(np.float64))

    def quick_embedding(self, spec: EmbeddingSpec, X: np.ndarray) -> str:
        """Key of an instant PCA layout of the rows, shown while the real embedding is computed."""
        key = f"pca{spec.key}-{spec.content}"
        if key not in self._embeddings:
            self._remember(key, embedding.pca_2d(X))
        return key

    def compute_embedding(self, spec: EmbeddingSpec, X: np.ndarray, progress: Callable[[str], None] | None = None
                          ) -> np.ndarray:
        """Compute (or place new rows into a stored map) and store the embedding; float64 N x 2."""
        Y = self._place_new_rows(spec, X, progress)
        if Y is None:
            Y = embedding.embed(X, spec.algorithm, progress=progress)
        self._store_embedding(spec, X, Y)
        return self._remember(spec.client_key, Y)

    def _place_new_rows(self, spec: EmbeddingSpec, X: np.ndarray, progress: Callable[[str], None] | None
                        ) -> np.ndarray | None:
        """When the cache holds this embedding for fewer images whose vectors are unchanged, place only the
        new images into that map (openTSNE ``transform``); else None."""
        path = self._cache_file(spec.key)
        if spec.algorithm != "tsne" or not path.is_file():
            return None
        try:
            z = cstore.read_npz(path)
        except (OSError, ValueError, KeyError):
            return None
        old_ids = z["ids"].astype(str)
        rows = self._rows_of(old_ids)
        if len(old_ids) < 10 or (rows < 0).any() or not np.allclose(z["X"], X[rows].astype(np.float32), atol=1e-6):
            return None
        new = np.setdiff1d(np.arange(len(self.ids)), rows)
        if progress:
            progress(f"placing {len(new)} new images into the stored map of {len(rows)}")
        Y = np.zeros((len(self.ids), 2))
        Y[rows] = z["Y"]
        Y[new] = embedding.place(embedding.tsne_model(z["X"], z["Y"]), X[new])
        return Y

    def _store_embedding(self, spec: EmbeddingSpec, X: np.ndarray, Y: np.ndarray) -> None:
        try:
            cstore.write_npz(self._cache_file(spec.key), {
                "ids": self.ids.astype(str), "X": X.astype(np.float32), "Y": Y.astype(np.float64),
                "content": np.array(spec.content)})
            cstore.write_json(self.cache_dir / _LAST, {"key": spec.client_key, "params": spec.params()})
        except OSError as exc:  # a read-only corpus: the embedding is kept in memory only
            logger.warning("cannot cache the embedding in %s: %s", self.cache_dir, exc)

    def last_embedding(self) -> dict[str, Any] | None:
        """``{"key", "params"}`` of the embedding shown last, when it is still valid for this corpus."""
        path = self.cache_dir / _LAST
        try:
            last = json.loads(path.read_text())
            params = last["params"]
            view = View(params["head"], params["method"], params["normalisation"], params["basis"])
            self.check_view(view)
            spec, _ = self.embedding_spec(view, params["algorithm"], params["weights"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if spec.client_key != last.get("key") or self.cached_embedding(spec) is None:
            return None
        return {"key": spec.client_key, "params": spec.params()}

    # ---- the saved session (selections, weights, filters and view; written on every change)
    @property
    def session_path(self) -> Path:
        return self.cache_dir.parent / _SESSION

    def read_session(self) -> str | None:
        """The text of the session saved with this corpus, or None (none saved, or unreadable)."""
        try:
            data = self.session_path.read_bytes()
        except OSError:
            return None
        return data.decode("utf-8", errors="replace") if len(data) <= 4 * 1024 * 1024 * 4 else None

    def write_session(self, text: str) -> bool:
        """Save the session with the corpus (atomically); False when the corpus folder is read-only."""
        try:
            self.session_path.parent.mkdir(parents=True, exist_ok=True)
            cstore.write_bytes(self.session_path, text.encode("utf-8"))
        except OSError as exc:
            logger.warning("cannot save the dashboard session in %s: %s", self.session_path, exc)
            return False
        return True

    # ---- images, by id only
    def known_id(self, image_id: object) -> str | None:
        """The stored id equal to ``image_id``, or None when the corpus has no such image."""
        k = self.index.get(image_id) if isinstance(image_id, str) else None
        return None if k is None else str(self.ids[k])

    def photo_jpeg(self, image_id: str) -> bytes | None:
        """The display JPEG of a known image id (None for an unknown id, or when none is stored)."""
        stored = self.known_id(image_id)
        return self.corpus.display_jpeg(stored) if stored else None

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
                                                     self.region_labels(image_id), names=self.vocabulary))

    def image_vectors(self, image_id: str, normalisation: str, basis: str = "mean"
                      ) -> dict[tuple[str, str], np.ndarray]:
        """(head, method) -> score vector (C,) of one image, for every head and method it has."""
        k = self.index[image_id]
        out = {}
        for h in self.heads:
            for m in self.methods:
                v = self.score_matrix(View(h, m, normalisation, basis)).values[k]
                if not np.isnan(v).any():
                    out[(h, m)] = v
        return out

    def image_validity(self, image_id: str) -> pd.DataFrame | None:
        """One row per (head, method) of one image: faithfulness, deletion/insertion AUC and note; None
        without a validity record."""
        if not self.has_validity:
            return None
        k = self.index[image_id]
        rows = []
        for h in self.heads:
            for m in self.methods:
                v = self.validity(h, m)
                if v is not None:
                    r = v.iloc[k]
                    rows.append({"head": h, "method": m, **{c: float(r[c]) for c in VALIDITY_COLUMNS},
                                 "validity_note": str(r["validity_note"])})
        return pd.DataFrame(rows)

    def weighted_scores(self, view: View, weights: Weights) -> views.WeightedScores:
        """Weighted scores, top regions and predicted-class codes of the view (cached per weighting)."""
        return self._weighted_scores(view, weights)

    @lru_cache(maxsize=4)  # noqa: B019  # one query per app, kept for the app's life
    def _weighted_scores(self, view: View, weights: Weights) -> views.WeightedScores:
        matrix = self.score_matrix(view)
        w = views.column_weights(matrix, self.vocabulary, weights.as_dict())
        return views.weighted_scores(matrix, w, self.predictions(view.head))

    # ---- filters
    def filter_mask(self, view: View, filters: Filters) -> np.ndarray:
        """bool (N,): images with a vector for the view that pass every range filter (cached)."""
        return self._filter_mask(view, filters)

    @lru_cache(maxsize=8)  # noqa: B019  # one query per app, kept for the app's life
    def _filter_mask(self, view: View, filters: Filters) -> np.ndarray:
        matrix = self.score_matrix(view)
        bounds = self.slider_bounds(view)
        pairs = [(c, v) for c, v in zip(filters.columns, filters.values) if c in matrix.columns]
        ranges = views.ranges_from_sliders([{"column": c} for c, _ in pairs], [v for _, v in pairs], bounds)
        mask = views.filter_mask(matrix, ranges)
        if filters.faithfulness is not None:
            faith = self.faithfulness(view)
            lo, hi = filters.faithfulness
            if faith is None:
                return mask
            with np.errstate(invalid="ignore"):
                mask = mask & (faith >= lo - 1e-9) & (faith <= hi + 1e-9)
        mask.setflags(write=False)
        return mask
