"""Reading a corpus: :class:`Corpus`, the read-only view of one published generation, and its score tables."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from semcontrib.contributions import BASES, NORMALISATIONS, normalise
from semcontrib.regions import RegionMap
from semcontrib.store.files import _tables_lock
from semcontrib.store.generations import read_images_table
from semcontrib.store.manifest import manifest_parts, read_manifest
from semcontrib.store.parts import Part
from semcontrib.store.schema import ATTRIBUTION_COLUMNS, CONTRIBUTION_COLUMNS, MANIFEST, CorpusError, StorePaths
from semcontrib.store.view import (
    ViewScores,
    check_part,
    part_columns,
    read_part_columns,
    restore_text,
    score_columns,
    scores_from_rows,
    view_columns,
    with_partition_columns,
)
from semcontrib.store.work import WorkStore

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- reading


class Corpus:
    """Read access to a corpus directory: one consistent generation of manifest and tables.

    Opening reads the manifest and the images table, and checks every listed part from its footer;
    the attributions and contributions tables are read when asked for, and only what is asked for:
    :meth:`view_scores` reads four number columns and the image ids of one head x method partition,
    :meth:`contribution_table` the partitions (and rows) it names, :meth:`attribution_rows` some
    columns of one partition. :attr:`attributions` and :attr:`contributions` read a whole table (once).

    Examples
    --------
    >>> corpus = Corpus.open("demo_corpus")                       # doctest: +SKIP
    >>> corpus.contribution_table("nature", "lrp", wide=True)     # doctest: +SKIP
    >>> corpus.view_scores("nature", "lrp", "signed_l1", "mean").values.shape   # doctest: +SKIP
    (120, 9)
    """

    def __init__(self, root: Path, manifest: dict[str, Any], images: pd.DataFrame) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.paths = StorePaths(self.root)
        self.images: pd.DataFrame = images
        self._parts = manifest_parts(manifest, self.root / MANIFEST)
        self._tables: dict[str, pd.DataFrame] = {}
        self._ok_ids: np.ndarray | None = None
        self._attribution_columns: list[str] | None = None
        self._chunk_index: tuple[pd.Index, np.ndarray] | None = None
        self._kept: dict[str, pa.Table] = {}  # part file -> columns read for a view (see _read_parts)

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        """Open a corpus; ``CorpusError`` with a one-line reason when it is not a readable corpus.

        Reads the manifest and the images table; every part the manifest lists is checked from its
        footer (inside the corpus, within the size cap, readable, the rows the manifest says), and no
        part's rows are read."""
        root = Path(root)
        if not root.is_dir():
            raise CorpusError(f"{root} is not a corpus (no such folder); run `semcontrib analyze` first")
        with _tables_lock(root, exclusive=False):
            manifest = read_manifest(root)
            if manifest is None:
                raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
            images = read_images_table(root, manifest)
            for p in manifest_parts(manifest, root / MANIFEST):
                check_part(root, p)
        return cls(root, manifest, images)

    # ---- whole tables (read on first use; the dashboard and the export never ask for them)
    @property
    def attributions(self) -> pd.DataFrame:
        """The whole attributions table (every partition), read on first use."""
        return self._table("attributions")

    @property
    def contributions(self) -> pd.DataFrame:
        """The whole contributions table (every partition, long), read on first use."""
        return self._table("contributions")

    def _table(self, table: str) -> pd.DataFrame:
        if table not in self._tables:
            self._tables[table] = self._read(table, [p for p in self._parts if p.table == table])
        return self._tables[table]

    def _read(self, table: str, parts: Sequence[Part], columns: Sequence[str] | None = None,
              image_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Rows of ``parts`` (in manifest order) with their ``head`` and ``method`` columns, as pandas;
        only ``columns`` (all with None) and the rows of ``image_ids`` (all with None)."""
        every = ATTRIBUTION_COLUMNS if table == "attributions" else CONTRIBUTION_COLUMNS
        if not parts:
            names = list(every) if columns is None else [*columns[:1], "head", "method", *columns[1:]]
            return pd.DataFrame({c: pd.Series(dtype=object) for c in names})
        if image_ids is None:
            tables = self._read_parts(parts, columns)
        else:  # the rows of these images, found on the ids; then the text of those rows only
            tables = self._read_parts(parts, columns, as_dictionary=("image_id", "target", "region"))
            wanted = pa.array(list(image_ids), pa.string())  # is_in looks a dictionary column up by its values
            tables = [restore_text(t.filter(pc.is_in(t.column("image_id"), value_set=wanted))) for t in tables]
        arrow = [with_partition_columns(t, p) for p, t in zip(parts, tables)]
        return pa.concat_tables(arrow, promote_options="permissive").to_pandas()

    def _read_parts(self, parts: Sequence[Part], columns: Sequence[str] | None,
                    as_dictionary: Sequence[str] = (), keep: bool = False) -> list[pa.Table]:
        """Some columns of some parts, under the tables lock (a publish never swaps them mid-read).

        Columns kept from an earlier read (``keep``: a view's ids and raw statistics, so that exporting
        from the view shown reads only the other columns) are not read again: a part's file never
        changes (a new generation writes new files)."""
        out = []
        with _tables_lock(self.root, exclusive=False):
            for p in parts:
                kept = self._kept.get(p.file)
                have = [] if kept is None or columns is None else [c for c in columns if c in kept.column_names]
                rest = None if columns is None else [c for c in columns if c not in have]
                read = None
                if rest is None or rest:
                    read = (read_part_columns(self.root, p, rest, as_dictionary) if as_dictionary
                            else read_part_columns(self.root, p, rest))
                if not have:
                    table = read
                else:
                    assert kept is not None and columns is not None
                    got = {c: kept.column(c) for c in have}
                    if read is not None:
                        got.update({c: read.column(c) for c in read.column_names})
                    meta = None if read is None else read.schema.metadata
                    table = pa.Table.from_arrays([got[c] for c in columns], names=list(columns), metadata=meta)
                assert table is not None
                if keep:
                    self._keep(p.file, table)
                out.append(table)
        return out

    def _keep(self, file: str, table: pa.Table) -> None:
        """Remember some columns of a part (the last few views' parts, up to 24M rows)."""
        old = self._kept.pop(file, None)
        if old is not None:
            extra = [c for c in old.column_names if c not in table.column_names]
            for c in extra:
                table = table.append_column(c, old.column(c))
        self._kept[file] = table
        while sum(t.num_rows for t in self._kept.values()) > _KEEP_ROWS and len(self._kept) > 1:
            self._kept.pop(next(iter(self._kept)))

    @property
    def parts(self) -> list[Part]:
        """The table parts of this generation (for readers that scan the Parquet files themselves)."""
        return list(self._parts)

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

    def _chunks_of(self, image_ids: Sequence[str]) -> np.ndarray | None:
        """int64: the chunk of each image id (vectorised :meth:`chunk_of`), or None when one of them has
        none (an unknown id, or an image never planned)."""
        if self._chunk_index is None:
            planned = self.images[self.images["chunk"] >= 0] if "chunk" in self.images else self.images.iloc[:0]
            planned = planned.drop_duplicates("image_id")
            self._chunk_index = (pd.Index(planned["image_id"].astype(str)),
                                 planned["chunk"].to_numpy(dtype=np.int64))
        index, chunks = self._chunk_index
        at = index.get_indexer(pd.Index(list(image_ids), dtype=object))
        return None if (at < 0).any() else chunks[at]

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
    def _partition(self, table: str, head: str | None, method: str | None) -> list[Part]:
        """The parts of ``table`` in the head and method given (every one for None), in manifest order."""
        if head is not None and head not in self.heads:
            raise ValueError(f"unknown head {head!r}; corpus has {self.heads}")
        if method is not None and method not in self.methods:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        return [p for p in self._parts if p.table == table and (head is None or p.head == head)
                and (method is None or p.method == method)]

    def contribution_table(self, head: str | None = None, method: str | None = None,
                           normalisation: str = "signed_l1", basis: str = "mean", wide: bool = False,
                           image_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """Contribution scores derived at read time from the raw statistics.

        Long format: one row per (image, head, method, region) with the raw statistics and
        ``score`` (for ``split``: ``score_pos`` and ``score_neg``). Wide: one row per (image, head,
        method), one column per region (``split`` gives ``REGION+`` and ``REGION-`` columns).

        Reads only the partitions of ``head`` and ``method`` (every one for None), of them only the parts
        that hold a chunk of ``image_ids`` (when every one of them is a known image), and only the
        columns the table shows.
        """
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        parts = self._partition("contributions", head, method)
        if image_ids is not None:
            image_ids = [str(i) for i in image_ids]
        if image_ids is not None and len(parts) > 1:  # one part per partition: nothing to leave out
            chunks = self._chunks_of(image_ids)
            if chunks is not None:  # else an id the images table lacks: look everywhere
                wanted = set(chunks.tolist())
                parts = [p for p in parts if not wanted.isdisjoint(p.chunks)]
        df = self._read("contributions", parts, _SCORE_TABLE_COLUMNS, image_ids)
        return score_table(df, self.vocabulary, normalisation, basis, wide)

    def ok_ids(self) -> np.ndarray:
        """object (N,): the ids of the images of status ok, in the images table's order (the rows of
        :meth:`view_scores`)."""
        if self._ok_ids is None:
            ok = self.images[self.images["status"] == "ok"]
            self._ok_ids = ok["image_id"].astype(str).to_numpy(dtype=object)
        return self._ok_ids

    def view_scores(self, head: str, method: str, normalisation: str = "signed_l1", basis: str = "mean"
                    ) -> ViewScores:
        """The scores of one view: N x C, one row per image of status ok (images table order), NaN rows
        for images without a vector; the same numbers as ``contribution_table(head, method,
        normalisation, basis, wide=True)`` aligned to :meth:`ok_ids`.

        Reads the image ids and the four raw statistics of the one head x method partition and
        normalises them as stored (see :mod:`semcontrib.store.view`); a partition not laid out as the
        engine writes it is read and sorted as :meth:`contribution_table` does.
        """
        if normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        parts = self._partition("contributions", head, method)
        ids = self.ok_ids()
        columns, column_region = score_columns(self.vocabulary, normalisation)
        K = len(self.vocabulary)
        values = None
        if parts:
            tables = self._read_parts(parts, view_columns(normalisation), keep=True)
            values = scores_from_rows(pa.concat_tables(tables, promote_options="permissive"), K, ids,
                                      normalisation, basis)
            if values is None:
                logger.info("contributions of %s x %s are not stored image-major; sorting them", head, method)
                wide = self.contribution_table(head, method, normalisation, basis, wide=True)
                frame = wide.drop_duplicates("image_id").set_index("image_id").reindex(list(ids))
                values = frame[list(columns)].to_numpy(dtype=np.float64)
        if values is None:
            values = np.full((len(ids), len(columns)), np.nan)
        return ViewScores(ids, columns, column_region, values)

    @property
    def attribution_columns(self) -> list[str]:
        """The columns of the attributions table (from the parts' footers; no rows are read)."""
        if self._attribution_columns is None:
            names: list[str] = ["image_id", "head", "method"]
            for p in self._parts:
                if p.table == "attributions":
                    names += [c for c in part_columns(self.root, p) if c not in names]
            self._attribution_columns = names if len(names) > 3 else list(ATTRIBUTION_COLUMNS)
        return list(self._attribution_columns)

    def attribution_rows(self, head: str, method: str, columns: Sequence[str]) -> pd.DataFrame:
        """Some columns of one head x method partition of the attributions table (stored order), with
        ``image_id`` first; columns the parts do not store are left out."""
        parts = self._partition("attributions", head, method)
        wanted = ["image_id", *[c for c in columns if c != "image_id"]]
        if parts:
            stored = set(part_columns(self.root, parts[0])).intersection(
                *(part_columns(self.root, p) for p in parts[1:]))
            wanted = [c for c in wanted if c in stored]
        df = self._read("attributions", parts, wanted)
        return df.drop(columns=["head", "method"])


_KEEP_ROWS = 24_000_000  # rows of view columns kept (three head x method partitions at 1M images)

# the columns a score table shows (target_index and the stored default scores are not read)
_SCORE_TABLE_COLUMNS = ("image_id", "target", "region", "region_index", "n_pixels", "sum", "pos_sum", "neg_sum")


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
