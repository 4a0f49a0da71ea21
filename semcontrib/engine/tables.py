"""Tables: the rows of the images, attributions and contributions tables, their parts, and publishing a generation."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from semcontrib import corpus as cstore
from semcontrib.corpus import ImageRecord, Part, WorkStore
from semcontrib.engine import keys
from semcontrib.engine.chunk import ChunkResult
from semcontrib.engine.plan import Plan, PlannedInput
from semcontrib.engine.rows import attribution_frame, contribution_frame
from semcontrib.engine.workers import (  # per-image work, in worker processes that never import torch
    _utf8,
    path_text,
)
from semcontrib.regions import RegionSource
from semcontrib.settings import AnalysisSettings

logger = logging.getLogger(__name__)


class RunView(Protocol):
    """What the tables read of a run (:class:`semcontrib.engine.run.AnalysisRun` is one)."""

    root: Path
    settings: AnalysisSettings
    vocabulary: tuple[str, ...]
    heads: list[str]
    head_classes: dict[str, int]
    mkey: str
    source: RegionSource
    store: WorkStore
    rows_keys: dict[str, str]
    fingerprint: str
    images_key: str

    def classes(self, head: str) -> list[str]: ...

    def region_key(self, chunk: int, members: Sequence[PlannedInput] | None = None) -> str: ...

    def files_digest(self, chunk: int) -> str: ...

    def manifest(self, extra: Mapping[str, Any]) -> dict[str, Any]: ...



# --------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class Generation:
    """What the corpus's current generation holds: its manifest, parts and the members of its chunks."""

    manifest: dict[str, Any]
    parts: list[Part]
    members: dict[int, str]
    retry: frozenset[int]
    images_ok: bool
    files: dict[int, str]

    @classmethod
    def read(cls, root: Path) -> Generation | None:
        try:
            manifest = cstore.read_manifest(root)
            if manifest is None or not (root / "images.parquet").is_file():
                return None
            parts = cstore.manifest_parts(manifest, root / cstore.MANIFEST)
            members = {int(c): str(d) for c, d in dict(manifest.get("chunk_members") or {}).items()}
            retry = frozenset(int(c) for c in manifest.get("retry_chunks") or [])
            files = {int(c): str(d) for c, d in dict(manifest.get("chunk_files") or {}).items()}
        except (cstore.CorpusError, ValueError, TypeError, AttributeError) as exc:
            logger.warning("the corpus's manifest cannot be used (%s); its tables are rebuilt", exc)
            return None
        intact = [p for p in parts if cstore.part_intact(root, p)]  # a damaged part's chunks are rebuilt
        return cls(manifest, intact, members, retry, cstore.table_generation(root / "images.parquet")
                   == manifest.get("generation"), files)


class TableSink:
    """Rows of the three tables: those of the chunks computed by this run, and the current generation's
    parts for the others (kept as they are, or filtered when their images are no longer inputs)."""

    FLUSH_ROWS = 4_000_000  # contribution rows held in memory before they go to a part

    def __init__(self, run: RunView, plan: Plan) -> None:
        self.run = run
        self.plan = plan
        self.image_rows: dict[str, dict[str, Any]] = {}
        self.frames: dict[tuple[str, str, str], list[pd.DataFrame]] = {}
        self.chunks: list[int] = []
        self.written: list[Part] = []
        self.held = 0
        self.retry: set[int] = set()  # chunks with a region failure that may pass

    # ---- rows of one chunk
    def add(self, chunk: int, res: ChunkResult) -> None:
        run = self.run
        K = len(run.vocabulary)
        members = [m.image_id for m in self.plan.chunks[chunk]]
        rows = [i for i in members if res.records[i].status == "ok" and i in res.preds
                and i in res.regions and res.regions[i].labels is not None and all(i in a for a in res.attrs.values())]
        for i in members:
            self.image_rows[i] = self._image_row(i, chunk, res)
            rw = res.regions.get(i)
            if rw is not None and rw.labels is None and not rw.permanent:
                self.retry.add(chunk)
        for m in run.settings.all_methods:
            for h in run.heads:
                self._add_rows(chunk, (m, h), rows, res, K)
        self.chunks.append(chunk)
        if self.held > self.FLUSH_ROWS:
            self._flush()

    def _image_row(self, image_id: str, chunk: int, res: ChunkResult) -> dict[str, Any]:
        rec = res.records[image_id]
        row: dict[str, Any] = {"width": rec.width, "height": rec.height, "original_mode": rec.original_mode,
                               "status": rec.status, "reason": rec.reason, "chunk": chunk}
        rw = res.regions.get(image_id)
        if rec.status == "ok" and (rw is None or rw.labels is None):
            row.update(status="skipped", reason=f"regions: {rw.error if rw else 'not computed'}")
        elif rec.status == "ok" and rw is not None and rw.error:  # a map with a note (faces: "no face found")
            row["reason"] = f"regions: {rw.error}"
        pred = res.preds.get(image_id)
        for h in self.run.heads:
            if pred is None:
                row[f"pred_{h}"], row[f"prob_{h}"] = None, np.nan
                continue
            z = pred.logits[h].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            row[f"pred_{h}"] = self.run.classes(h)[int(np.argmax(z))]
            row[f"prob_{h}"] = float(p.max())
        return row

    def _add_rows(self, chunk: int, view: tuple[str, str], ids: list[str], res: ChunkResult, K: int) -> None:
        m, h = view
        classes = self.run.classes(h)
        nan = float("nan")
        attr_rows: list[dict[str, Any]] = []
        contrib: dict[str, list[Any]] = {c: [] for c in ("image_id", "target", "target_index", "stats")}
        for i in ids:
            a = res.attrs[m][i][h]
            logit = float(res.preds[i].logits[h][a.target])
            vrec = res.validity[i].records.get((m, h)) if i in res.validity else None
            row: dict[str, Any] = {"image_id": i, "target": classes[a.target], "target_index": a.target, "logit": logit,
                                   "status": a.status, "delta": nan if a.delta is None else a.delta, "lrp_ratio": nan,
                                   **{c: nan for c in cstore.VALIDITY_VALUES},
                                   "validity_note": "no validity record" if vrec is None else vrec[-1]}
            if vrec is not None:
                row.update(zip(cstore.VALIDITY_VALUES, vrec[:-1]))
            st = a.stats
            if a.status != "ok" or st is None:
                row.update(total=nan, scale=nan, unassigned_n=0, unassigned_sum=nan, unassigned_pos=nan,
                           unassigned_neg=nan)
                attr_rows.append(row)
                continue
            row.update(total=st.total, scale=a.scale, unassigned_n=int(st.unassigned[0]),
                       unassigned_sum=float(st.unassigned[1]), unassigned_pos=float(st.unassigned[2]),
                       unassigned_neg=float(st.unassigned[3]))
            if m == "lrp" and logit != 0:
                row["lrp_ratio"] = st.total / logit
            attr_rows.append(row)
            contrib["image_id"].append(i)
            contrib["target"].append(classes[a.target])
            contrib["target_index"].append(a.target)
            contrib["stats"].append(np.stack([np.asarray(v, np.float64) for v in (st.n_pixels, st.sum, st.pos_sum,
                                                                                    st.neg_sum)]))
        self._hold(("attributions", h, m), attribution_frame(attr_rows))
        stats = np.stack(contrib["stats"], axis=1) if contrib["stats"] else np.zeros((4, 0, K))
        self._hold(("contributions", h, m), contribution_frame(contrib["image_id"], contrib["target"],
                                                               contrib["target_index"], self.run.vocabulary,
                                                               list(stats)))

    def _hold(self, key: tuple[str, str, str], df: pd.DataFrame) -> None:
        self.frames.setdefault(key, []).append(df)
        self.held += len(df)

    def _flush(self) -> None:
        """Write the rows held as new parts (one per table, head and method) for the chunks added so far."""
        run = self.run
        for (table, h, m), frames in sorted(self.frames.items(), key=lambda kv: self._order(kv[0])):
            df = pd.concat(frames, ignore_index=True)
            if table == "contributions":
                cstore.add_default_scores(df, len(run.vocabulary))
            else:
                df["validity_note"] = df["validity_note"].map(_utf8)
            self.written.append(cstore.write_part(run.root, table, h, m, df,
                                                  key=run.rows_keys[m], chunks=sorted(self.chunks)))
        self.frames, self.chunks, self.held = {}, [], 0

    def _order(self, key: tuple[str, str, str]) -> tuple[int, int, int]:
        table, h, m = key
        return (cstore.PARTITIONED.index(table), self.run.heads.index(h), self.run.settings.all_methods.index(m))

    # ---- the generation
    def publish(self, old: Generation | None, done: set[int]) -> pd.DataFrame:
        """Write the parts of the chunks computed, keep or filter the old ones, and publish the tables."""
        run, plan = self.run, self.plan
        if self.chunks:
            self._flush()
        current = set(plan.chunks)
        wanted = {m: set(run.heads) for m in run.settings.all_methods}
        parts: list[Part] = []
        for p in (old.parts if old is not None else []):
            if p.key != run.rows_keys.get(p.method) or p.head not in wanted.get(p.method, set()):
                continue
            keep = [c for c in p.chunks if c in done]
            if keep == list(p.chunks):
                parts.append(p)
            elif keep:  # some of its chunks were recomputed or are no longer inputs: keep the rest
                df = cstore.read_part(run.root, p)
                ids = {m.image_id for c in keep for m in plan.chunks[c]}
                parts.append(cstore.write_part(run.root, p.table, p.head, p.method, df[df["image_id"].isin(ids)],
                                               key=p.key, chunks=keep))
        parts += self.written
        parts.sort(key=lambda p: (*self._order((p.table, p.head, p.method)), min(p.chunks, default=0)))
        parts = cstore.compact_parts(run.root, parts)  # many small parts (incremental runs): merged
        inputs_digest = keys.plan_inputs_digest(plan) or keys.inputs_digest(plan.inputs, path_text)
        recorded = old.manifest if old is not None else {}
        unchanged = old is not None and old.images_ok and not self.written \
            and [p.file for p in parts] == [p.file for p in old.parts] \
            and recorded.get("inputs_digest") == inputs_digest and recorded.get("fingerprint") == run.fingerprint \
            and recorded.get("images_key") == run.images_key and recorded.get("rows_keys") == run.rows_keys
        if unchanged:  # nothing to write: the generation already is this one
            with contextlib.suppress(cstore.CorpusError):
                return cstore.read_table(run.root / "images.parquet")[0]
        images = self._images(old)
        members = {str(c): keys.hash_key(plan.chunk_ids(c)) for c in sorted(current)}
        files = {str(c): run.files_digest(c) for c in sorted(current)}
        manifest = run.manifest({"chunk_members": members, "chunk_files": files, "inputs_digest": inputs_digest,
                                 "retry_chunks": sorted(self.retry),
                                 "images_key": run.images_key, "rows_keys": run.rows_keys})
        cstore.publish(run.root, images, parts, manifest)
        return images

    def _images(self, old: Generation | None) -> pd.DataFrame:
        """The images table, in input order: rows of chunks computed now, of the old table, or read back."""
        run, plan = self.run, self.plan
        reuse: dict[str, dict[str, Any]] = {}
        if old is not None and old.images_ok and old.manifest.get("images_key") == run.images_key:
            with contextlib.suppress(cstore.CorpusError):
                prev, _ = cstore.read_table(run.root / "images.parquet")
                if "chunk" in prev:
                    prev = prev[prev["chunk"] >= 0]
                    cols = ["width", "height", "original_mode", "status", "reason", "chunk"] + \
                        [c for h in run.heads for c in (f"pred_{h}", f"prob_{h}")]
                    if all(c in prev for c in cols):
                        reuse = {str(i): {str(k): v for k, v in r.items()}
                                 for i, r in zip(prev["image_id"], prev[cols].to_dict("records"))}
        missing = sorted({i.chunk for i in plan.inputs if i.chunk >= 0 and i.image_id not in self.image_rows
                          and (i.image_id not in reuse or reuse[i.image_id]["chunk"] != i.chunk)})
        for c in missing:  # read back (records, predictions, region failures; no maps)
            res = self._light(c)
            for m in plan.chunks[c]:
                self.image_rows[m.image_id] = self._image_row(m.image_id, c, res)
        label_cols = sorted({k for i in plan.inputs for k in i.entry.labels})
        rows = []
        for i in plan.inputs:
            row: dict[str, Any] = {"image_id": i.image_id, "path": _utf8(path_text(i.entry.path)), "sha256": i.sha256}
            if i.reason:
                row.update(width=0, height=0, status="skipped", reason=_utf8(i.reason), original_mode="", chunk=-1)
                row.update({f: v for h in run.heads for f, v in ((f"pred_{h}", None), (f"prob_{h}", np.nan))})
            else:
                row.update(self.image_rows.get(i.image_id) or reuse[i.image_id])
                row["reason"] = _utf8(str(row["reason"]))
            for col in label_cols:
                row[f"label_{col}"] = _utf8(i.entry.labels.get(col, ""))
            rows.append(row)
        columns = list(cstore.IMAGE_COLUMNS) + [f"label_{c}" for c in label_cols] + \
            [c for h in run.heads for c in (f"pred_{h}", f"prob_{h}")]
        df = pd.DataFrame(rows, columns=columns)
        for col in ("chunk", "width", "height"):
            df[col] = df[col].astype(np.int64)
        return df

    def _light(self, chunk: int) -> ChunkResult:
        run = self.run
        ids = [m.image_id for m in self.plan.chunks[chunk]]
        records = run.store.read_images(chunk, ids) or {i: ImageRecord(0, 0, "", "skipped", "not computed")
                                                         for i in ids}
        preds = run.store.read_predictions(run.mkey, chunk, run.head_classes) or {}
        regions = run.store.read_regions(run.source.name, run.region_key(chunk), chunk, len(run.vocabulary),
                                         labels=False)
        return ChunkResult(records, preds, dict(regions.works) if regions else {}, {}, {})
