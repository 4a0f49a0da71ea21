"""Reading a corpus: :class:`Corpus`, the read-only view of one published generation, and its score tables."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from semcontrib.contributions import BASES, NORMALISATIONS, normalise
from semcontrib.regions import RegionMap
from semcontrib.store.files import _tables_lock
from semcontrib.store.generations import read_images_table
from semcontrib.store.manifest import manifest_parts, read_manifest
from semcontrib.store.parts import Part, _read_part_arrow
from semcontrib.store.schema import ATTRIBUTION_COLUMNS, CONTRIBUTION_COLUMNS, MANIFEST, CorpusError, StorePaths
from semcontrib.store.work import WorkStore

# --------------------------------------------------------------------------- reading


class Corpus:
    """Read access to a corpus directory: one consistent generation of manifest and tables.

    Examples
    --------
    >>> corpus = Corpus.open("demo_corpus")                       # doctest: +SKIP
    >>> corpus.contribution_table("nature", "lrp", wide=True)     # doctest: +SKIP
    """

    def __init__(self, root: Path, manifest: dict[str, Any], tables: Mapping[str, pd.DataFrame]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.paths = StorePaths(self.root)
        self.images: pd.DataFrame = tables["images"]
        self.attributions: pd.DataFrame = tables["attributions"]
        self.contributions: pd.DataFrame = tables["contributions"]

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        """Open a corpus; ``CorpusError`` with a one-line reason when it is not a readable corpus."""
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(f"{root} is not a corpus (no such folder); run `semcontrib analyze` first")
        with _tables_lock(root, exclusive=False):
            manifest = read_manifest(root)
            if manifest is None:
                raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
            images = read_images_table(root, manifest)
            parts = manifest_parts(manifest, root / MANIFEST)
            tables = {"images": images}
            for t, columns in (("attributions", ATTRIBUTION_COLUMNS), ("contributions", CONTRIBUTION_COLUMNS)):
                arrow = [_read_part_arrow(root, p) for p in parts if p.table == t]
                if not arrow:
                    tables[t] = pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
                    continue
                tables[t] = pa.concat_tables(arrow, promote_options="permissive").to_pandas()
        return cls(root, manifest, tables)

    @property
    def parts(self) -> list[Part]:
        """The table parts of this generation (for readers that scan the Parquet files themselves)."""
        return manifest_parts(self.manifest, self.root / MANIFEST)

    # ---- metadata
    @property
    def heads(self) -> list[str]:
        """Heads in model order."""
        return list(self.manifest.get("head_order") or self.manifest["heads"])

    def classes(self, head: str) -> list[str]:
        return list(self.manifest["heads"][head])

    @property
    def methods(self) -> list[str]:
        """Methods in the order they were asked for."""
        return list(self.manifest.get("method_order") or self.manifest["methods"])

    @property
    def vocabulary(self) -> list[str]:
        return list(self.manifest["regions"]["vocabulary"])

    @property
    def input_size(self) -> int:
        return int(self.manifest["model"].get("input_size", 224))

    def image_ids(self) -> list[str]:
        ok = self.images[self.images["status"] == "ok"]
        return ok["image_id"].tolist()

    # ---- per-image work (found through the images table's chunk column)
    def _store(self) -> WorkStore:
        return WorkStore(self.root, self.input_size, readonly=True)

    def chunk_of(self, image_id: str) -> int | None:
        """The chunk that holds a known image's work, or None (unknown id, or an image never planned)."""
        if not isinstance(image_id, str):
            return None
        if not hasattr(self, "_chunks"):
            ok = self.images[self.images["chunk"] >= 0] if "chunk" in self.images else self.images.iloc[:0]
            self._chunks = dict(zip(ok["image_id"].astype(str), ok["chunk"].astype(int)))
        c = self._chunks.get(image_id)
        return None if c is None else int(c)

    def attribution_map(self, image_id: str, head: str, method: str) -> np.ndarray | None:
        """The stored display map, float64 HxW at model resolution, or None (absent, non-finite or bad)."""
        if method not in self.manifest["methods"]:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        key = self.manifest["methods"][method]["key"]
        work = self._store().read_attribution(method, key, chunk, {head: len(self.manifest["heads"][head])},
                                              len(self.vocabulary), maps=True)
        a = None if work is None else work.works.get(image_id, {}).get(head)
        return None if a is None or a.values is None else a.values

    def logits(self, image_id: str, head: str) -> np.ndarray | None:
        """The head's logits for one image (float32, one per class), or None when not stored or bad."""
        if head not in self.manifest["heads"]:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        works = self._store().read_predictions(self.manifest["model"]["key"], chunk,
                                               {head: len(self.manifest["heads"][head])})
        work = None if works is None else works.get(image_id)
        return None if work is None else np.asarray(work.logits[head], np.float32)

    def region_map(self, image_id: str) -> RegionMap | None:
        reg = self.manifest["regions"]
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        key = reg.get("chunk_keys", {}).get(str(chunk), reg["key"])  # a chunk with region edits has its own
        work = self._store().read_regions(reg["name"], key, chunk, len(self.vocabulary))
        w = None if work is None else work.works.get(image_id)
        if w is None or w.labels is None:
            return None
        return RegionMap(w.labels.astype(np.int32), tuple(reg["vocabulary"]))

    def display_jpeg(self, image_id: str) -> bytes | None:
        """The stored display JPEG of a known image id, or None.

        Never found from user input alone: the id must be in the images table, and the bytes come
        from the chunk file that the table names, inside this corpus's store (never a symlink).
        """
        chunk = self.chunk_of(image_id)
        if chunk is None:
            return None
        path = self.paths.images(chunk)
        if path.is_symlink() or not path.is_file() or self.paths.store.resolve() not in path.resolve().parents:
            return None
        return self._store().read_display(chunk, image_id)

    # ---- derived tables
    def contribution_table(self, head: str | None = None, method: str | None = None,
                           normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False,
                           image_ids: list[str] | None = None) -> pd.DataFrame:
        """Contribution scores derived at read time from the raw statistics.

        Long format: one row per (image, head, method, region) with the raw statistics and
        ``score`` (for ``split``: ``score_pos`` and ``score_neg``). Wide: one row per (image, head,
        method), one column per region (``split`` gives ``REGION+`` and ``REGION-`` columns).
        """
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        df = self.contributions
        if head is not None:
            if head not in self.heads:
                raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
            df = df[df["head"] == head]
        if method is not None:
            if method not in self.methods:
                raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
            df = df[df["method"] == method]
        if image_ids is not None:
            df = df[df["image_id"].isin(image_ids)]
        return score_table(df, self.vocabulary, normalisation, basis, wide)


def score_table(df: pd.DataFrame, vocabulary: list[str], normalisation: str = "signed_l1",
                basis: str = "mean", wide: bool = False) -> pd.DataFrame:
    """Normalise a long raw-statistics table (rows ordered by region within each group)."""
    K = len(vocabulary)
    keys = ["image_id", "head", "method", "target"]
    raw = ["n_pixels", "sum", "pos_sum", "neg_sum"]
    df = df.sort_values(keys[:3] + ["region_index"], kind="stable")
    if len(df) % max(K, 1):
        raise CorpusError("contributions table is not complete per region")
    G = len(df) // max(K, 1)
    arr = {c: df[c].to_numpy(dtype=np.float64).reshape(G, K) for c in raw}
    s = normalise(arr["sum"], arr["pos_sum"], arr["neg_sum"], arr["n_pixels"], basis=basis)
    out = df[keys + ["region", "region_index"] + raw].copy()
    if normalisation == "split":
        out["score_pos"] = s.pos.ravel()
        out["score_neg"] = s.neg.ravel()
    else:
        out["score"] = getattr(s, normalisation).ravel()
    out["absent"] = s.absent.ravel()
    if normalisation == "paper":
        out["paper_unstable"] = np.repeat(s.paper_unstable, K)
    if not wide:
        return out.reset_index(drop=True)
    groups = out.iloc[::K][keys].reset_index(drop=True)
    if normalisation == "split":
        pos = pd.DataFrame(s.pos, columns=[f"{r}+" for r in vocabulary])
        neg = pd.DataFrame(s.neg, columns=[f"{r}-" for r in vocabulary])
        return pd.concat([groups, pos, neg], axis=1)
    scores = pd.DataFrame(getattr(s, normalisation), columns=list(vocabulary))
    wide_df = pd.concat([groups, scores], axis=1)
    if normalisation == "paper":
        wide_df["paper_unstable"] = s.paper_unstable
    return wide_df


def add_default_scores(contributions: pd.DataFrame, n_regions: int) -> None:
    """Add the stored default scores (mean basis) to a long raw-statistics table, in place.

    Rows come in groups of ``n_regions`` consecutive regions per (image, head, method). Adds
    ``score_signed_l1, score_paper, score_pos, score_neg, absent, paper_unstable``.
    """
    K = max(n_regions, 1)
    G = len(contributions) // K
    raw = {c: contributions[c].to_numpy(np.float64).reshape(G, K) for c in ("sum", "pos_sum", "neg_sum", "n_pixels")}
    s = normalise(raw["sum"], raw["pos_sum"], raw["neg_sum"], raw["n_pixels"])
    contributions["score_signed_l1"] = s.signed_l1.ravel()
    contributions["score_paper"] = s.paper.ravel()
    contributions["score_pos"] = s.pos.ravel()
    contributions["score_neg"] = s.neg.ravel()
    contributions["absent"] = s.absent.ravel().astype(bool)
    contributions["paper_unstable"] = np.repeat(s.paper_unstable, K).astype(bool)


def open_corpus(root: str | Path) -> Corpus:
    """Open a corpus directory for reading."""
    return Corpus.open(root)
