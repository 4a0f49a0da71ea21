"""The work store: one file per chunk and stage, read through one read-validate-discard path, written atomically."""

from __future__ import annotations

import contextlib
import errno
import logging
import zipfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from semcontrib.contributions import RegionStats
from semcontrib.store.codec import decode_map, encode_map
from semcontrib.store.files import _npy_header, read_npz, write_npz
from semcontrib.store.records import (
    ChunkAttribution,
    ChunkRegions,
    HeadAttribution,
    ImageRecord,
    PredictionWork,
    RegionWork,
    ValidityWork,
    _ids,
    _rows,
    _text,
    image_digest,
    regions_digest,
)
from semcontrib.store.schema import MAX_DISPLAY_BYTES, VALIDITY_VALUES, CorpusError, StorePaths, check_image_id, inside

logger = logging.getLogger(__name__)

T = TypeVar("T")


class WorkStore:
    """Reads and writes the work files of one corpus, one file per chunk and stage; every read
    validated, bad files deleted.

    ``size`` is the model's input resolution S; reads return None for a missing file and for a bad
    one (which is logged with its path and, unless ``readonly``, deleted so the caller recomputes it).
    """

    def __init__(self, root: Path, size: int, readonly: bool = False) -> None:
        self.paths = StorePaths(Path(root))
        self.size = size
        self.readonly = readonly
        self.discarded: list[str] = []

    def _discard(self, path: Path, why: str) -> None:
        self.discarded.append(str(path))
        if self.readonly:  # a reader never changes the corpus
            logger.warning("bad work file %s (%s); run `semcontrib analyze` again to recompute it", path, why)
            return
        logger.warning("discarding bad work file %s (%s); it will be recomputed", path, why)
        with contextlib.suppress(OSError):
            path.unlink()

    def intact(self, path: Path, ids: Sequence[str]) -> bool:
        """Whether a work file exists, its arrays' headers read and it holds the images ``ids`` (cheap:
        only its ``ids`` array is loaded); a file that does not is discarded."""
        def holds(z: dict[str, np.ndarray]) -> bool:
            if not set(ids) <= set(_ids(z)):
                raise ValueError("work of other images")
            return True

        return bool(self._load(path, ["ids"], holds))

    def _load(self, path: Path, keys: Sequence[str] | None, parse: Callable[[dict[str, np.ndarray]], T]) -> T | None:
        """The one read-validate-discard path of every reader: read the work file (None when absent), parse
        and validate its arrays with ``parse``; a file that cannot be read or fails ``parse`` (``KeyError``,
        ``ValueError``, ``TypeError``) is logged with its path, deleted, and read as None (recomputed)."""
        z = self._read(path, keys)
        if z is None:
            return None
        try:
            return parse(z)
        except (KeyError, ValueError, TypeError, StopIteration) as exc:
            self._discard(path, f"{type(exc).__name__}: {exc}")
            return None

    def _read(self, path: Path, keys: Sequence[str] | None = None) -> dict[str, np.ndarray] | None:
        if not path.is_file():
            return None
        if not inside(self.paths.root, path):
            self._discard(path, "a link that leads outside the corpus")
            return None
        try:
            return read_npz(path, keys=keys)
        except CorpusError as exc:
            self._discard(path, str(exc).split(": ", 1)[-1])
            return None

    # ---- images (records and packed display JPEGs)
    def read_images(self, chunk: int, ids: Sequence[str]) -> dict[str, ImageRecord] | None:
        """The records of a chunk's images (None when missing, bad, or not for exactly ``ids``)."""
        return self._load(self.paths.images(chunk), ["ids", "size", "mode", "status", "reason"],
                          lambda z: _parse_images(z, ids))

    def write_images(self, chunk: int, records: Mapping[str, ImageRecord], displays: Mapping[str, bytes]) -> None:
        """Store a chunk's image records (in order) and display JPEGs (one per image with status ok)."""
        ids = list(records)
        blobs = [displays.get(i, b"") for i in ids]
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        write_npz(self.paths.images(chunk), {
            "ids": _text(ids),
            "size": np.array([[r.width, r.height] for r in records.values()], np.int64).reshape(-1, 2),
            "mode": _text([r.original_mode for r in records.values()]),
            "status": _text([r.status for r in records.values()]),
            "reason": _text([r.reason for r in records.values()]),
            "offsets": offsets, "display": np.frombuffer(b"".join(blobs), np.uint8)}, compress=False)

    def read_display(self, chunk: int, image_id: str) -> bytes | None:
        """One image's display JPEG, read without loading the chunk's other images (None when absent)."""
        path = self.paths.images(chunk)
        if path.is_symlink() or not path.is_file():
            return None
        try:
            z = read_npz(path, keys=["ids", "offsets"])
            ids = _ids(z)
            k = ids.index(check_image_id(image_id))
            offsets = _rows(z, "offsets", len(ids) + 1, np.integer)
            start, stop = int(offsets[k]), int(offsets[k + 1])
            if not 0 <= start <= stop or stop - start > MAX_DISPLAY_BYTES:
                return None
            with zipfile.ZipFile(path) as zf, zf.open("display.npy") as member:
                shape, dtype = _npy_header(member)
                if dtype != np.uint8 or len(shape) != 1 or stop > shape[0]:
                    return None
                member.seek(member.tell() + start)
                data = member.read(stop - start)
            return data if len(data) == stop - start and data else None
        except (CorpusError, OSError, ValueError, KeyError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
            logger.warning("cannot read the display image of %s from %s: %s", image_id, path, exc)
            return None

    # ---- predictions
    def read_predictions(self, model_key: str, chunk: int, heads: Mapping[str, int]
                         ) -> dict[str, PredictionWork] | None:
        """``heads``: head name -> number of classes (the shapes a valid file must have)."""
        return self._load(self.paths.pred(model_key, chunk), None, lambda z: _parse_predictions(z, heads))

    def write_predictions(self, model_key: str, chunk: int, works: Mapping[str, PredictionWork]) -> None:
        ids = list(works)
        arrays: dict[str, np.ndarray] = {"ids": _text(ids)}
        if ids:
            first = works[ids[0]]
            for h in first.logits:
                arrays[f"logits/{h}"] = np.stack([np.asarray(works[i].logits[h], np.float32) for i in ids])
            if first.evidence is not None:
                arrays["evidence"] = np.stack([np.asarray(works[i].evidence, np.float32) for i in ids])
        write_npz(self.paths.pred(model_key, chunk), arrays)

    # ---- regions
    def read_regions(self, source: str, key: str, chunk: int, n_regions: int, labels: bool = True
                     ) -> ChunkRegions | None:
        """A chunk's region maps (``labels=False``: the failures and digest only, no maps loaded)."""
        want = None if labels else ["ids", "failed", "error", "permanent", "digest", "image_digests"]
        return self._load(self.paths.regions(source, key, chunk), want,
                          lambda z: _parse_regions(z, self.size, n_regions, labels))

    def write_regions(self, source: str, key: str, chunk: int, works: Mapping[str, RegionWork]) -> ChunkRegions:
        ids = list(works)
        S = self.size
        ok = [works[i].labels for i in ids if works[i].labels is not None]
        digest = regions_digest(key, works)
        images = {i: image_digest(i, works[i]) for i in ids}
        write_npz(self.paths.regions(source, key, chunk), {
            "image_digests": _text([images[i] for i in ids]),
            "ids": _text(ids), "failed": np.array([works[i].labels is None for i in ids], bool),
            "error": _text([works[i].error for i in ids]),
            "permanent": np.array([works[i].permanent for i in ids], bool),
            "labels": np.stack([np.asarray(x, np.int16) for x in ok]) if ok else np.zeros((0, S, S), np.int16),
            "digest": np.array(digest)})
        return ChunkRegions(dict(works), digest, images)

    # ---- attributions
    def read_attribution(self, method: str, key: str, chunk: int, heads: Mapping[str, int], n_regions: int | None,
                         maps: bool = False) -> ChunkAttribution | None:
        """One method's attributions of a chunk; with ``maps`` the display maps too (else ``values`` None).
        ``n_regions`` None: as many regions as the file holds (a file of another vocabulary size is read,
        not discarded: the caller checks its statistics' size)."""
        return self._load(self.paths.attr(method, key, chunk), None if maps else _attr_keys(heads),
                          lambda z: _parse_attribution(z, heads, n_regions, self.size, maps))

    def write_attribution(self, method: str, key: str, chunk: int, work: ChunkAttribution, n_regions: int,
                          exact: bool = False) -> ChunkAttribution:
        """Store one method's attributions of a chunk: statistics (which every ok head must carry),
        targets, statuses, deltas, scores, and the maps (``exact``: float64 as given, else the int8
        display form). Returns what :meth:`read_attribution` will read back (without maps)."""
        ids = list(work.works)
        n, K, S = len(ids), n_regions, self.size
        heads = list(work.works[ids[0]]) if ids else []
        arrays: dict[str, np.ndarray] = {"ids": _text(ids), "regions_digest": np.array(work.regions_digest),
                                         "n_pixels": np.zeros((n, K), np.int64)}
        stored: dict[str, dict[str, HeadAttribution]] = {}
        if work.image_digests:
            arrays["image_digests"] = _text([work.image_digests.get(i, "") for i in ids])
        if work.sources:
            arrays["source_sha"] = _text([work.sources.get(i, "") for i in ids])
        for h in heads:
            cols: dict[str, Any] = {
                "target": np.zeros(n, np.int64), "status": [], "delta": np.full(n, np.nan),
                "sum": np.zeros((n, K)), "pos": np.zeros((n, K)), "neg": np.zeros((n, K)), "total": np.full(n, np.nan),
                "unassigned": np.zeros((n, 4)), "scale": np.full(n, np.nan, np.float32),
                "map": np.zeros((n, S, S), np.float64 if exact else np.int8)}
            has_delta = has_scores = False
            scores = np.full((n, K), np.nan)
            for k, i in enumerate(ids):
                a = work.works[i][h]
                cols["target"][k] = a.target
                if a.delta is not None:
                    cols["delta"][k], has_delta = a.delta, True
                if a.scores is not None:
                    scores[k], has_scores = a.scores, True
                ok = a.status == "ok" and a.values is not None and a.stats is not None \
                    and bool(np.all(np.isfinite(a.values)))
                cols["status"].append("nonfinite" if a.status == "ok" and not ok else a.status)
                if not ok:
                    continue
                assert a.values is not None and a.stats is not None
                st = a.stats
                arrays["n_pixels"][k] = st.n_pixels
                cols["sum"][k], cols["pos"][k], cols["neg"][k] = st.sum, st.pos_sum, st.neg_sum
                cols["total"][k], cols["unassigned"][k] = st.total, st.unassigned
                if exact:
                    cols["map"][k] = a.values
                else:
                    cols["map"][k], cols["scale"][k] = encode_map(a.values)
            arrays[f"target/{h}"] = cols["target"]
            arrays[f"status/{h}"] = _text(cols["status"])
            if has_delta:
                arrays[f"delta/{h}"] = cols["delta"]
            if has_scores:
                arrays[f"scores/{h}"] = scores
            for s in ("sum", "pos", "neg", "total", "unassigned", "scale"):
                arrays[f"{s}/{h}"] = cols[s]
            arrays[f"exact/{h}" if exact else f"map/{h}"] = cols["map"]
            for k, i in enumerate(ids):
                a = work.works[i][h]
                stored.setdefault(i, {})[h] = replace(
                    a, status=str(cols["status"][k]), values=None, scale=float(cols["scale"][k]),
                    stats=a.stats if cols["status"][k] == "ok" else None)
        write_npz(self.paths.attr(method, key, chunk), arrays)
        return ChunkAttribution(stored, work.regions_digest, dict(work.sources), dict(work.image_digests))

    # ---- validity
    def read_validity(self, key: str, chunk: int, pairs: Sequence[tuple[str, str]]
                      ) -> tuple[dict[str, ValidityWork], str] | None:
        """A chunk's validity records and the region digest they were computed with."""
        return self._load(self.paths.validity(key, chunk), None, lambda z: _parse_validity(z, pairs))

    def validity_image_digests(self, key: str, chunk: int) -> dict[str, str]:
        """Image id -> what its stored validity record was computed from (``write_validity``'s
        ``image_digests``; empty when the file is missing or holds none)."""
        z = self._read(self.paths.validity(key, chunk), ["ids", "image_digests"])
        if z is None or "image_digests" not in z:
            return {}
        try:
            ids = _ids(z)
            return dict(zip(ids, (str(d) for d in _rows(z, "image_digests", len(ids), np.str_))))
        except (KeyError, ValueError, TypeError) as exc:
            self._discard(self.paths.validity(key, chunk), f"{type(exc).__name__}: {exc}")
            return {}

    def write_validity(self, key: str, chunk: int, works: Mapping[str, ValidityWork], digest: str,
                       image_digests: Mapping[str, str] | None = None) -> None:
        """``digest``: what the chunk's records were computed from; ``image_digests``: the same per image
        (what lets a later run keep one image's record when other images of the chunk changed)."""
        ids = list(works)
        arrays: dict[str, np.ndarray] = {"ids": _text(ids), "regions_digest": np.array(digest)}
        if image_digests:
            arrays["image_digests"] = _text([image_digests.get(i, "") for i in ids])
        pairs = list(works[ids[0]].records) if ids else []
        for m, h in pairs:
            nv = len(VALIDITY_VALUES)
            arrays[f"values/{m}/{h}"] = np.array([works[i].records[(m, h)][:nv] for i in ids],
                                                 np.float64).reshape(-1, nv)
            arrays[f"note/{m}/{h}"] = _text([works[i].records[(m, h)][nv] for i in ids])
        write_npz(self.paths.validity(key, chunk), arrays)


# ---- parsers: work-file arrays -> records, raising KeyError/ValueError/TypeError on anything malformed


def _parse_images(z: Mapping[str, np.ndarray], ids: Sequence[str]) -> dict[str, ImageRecord]:
    got = _ids(z)
    if got != list(ids):
        raise ValueError("images of another plan")
    n = len(got)
    size = _rows(z, "size", n, np.integer, (2,))
    mode, status, reason = (_rows(z, k, n, np.str_) for k in ("mode", "status", "reason"))
    return {i: ImageRecord(int(size[k, 0]), int(size[k, 1]), str(mode[k]), str(status[k]), str(reason[k]))
            for k, i in enumerate(got)}


def _parse_predictions(z: Mapping[str, np.ndarray], heads: Mapping[str, int]) -> dict[str, PredictionWork]:
    ids = _ids(z)
    n = len(ids)
    if n == 0:
        return {}
    logits = {h: _rows(z, f"logits/{h}", n, np.floating, (c,)) for h, c in heads.items()}
    if not all(np.all(np.isfinite(v)) for v in logits.values()):
        raise ValueError("non-finite logits")
    ev = z.get("evidence")
    if ev is not None and (ev.ndim != 4 or ev.shape[0] != n or min(ev.shape[1:], default=0) < 1
                           or not np.issubdtype(ev.dtype, np.floating) or not np.all(np.isfinite(ev))):
        raise ValueError("malformed class evidence")
    return {i: PredictionWork({h: logits[h][k] for h in heads}, None if ev is None else ev[k])
            for k, i in enumerate(ids)}


def _parse_regions(z: Mapping[str, np.ndarray], size: int, n_regions: int, labels: bool) -> ChunkRegions:
    ids = _ids(z)
    n = len(ids)
    failed = _rows(z, "failed", n, np.bool_)
    error = _rows(z, "error", n, np.str_)
    permanent = _rows(z, "permanent", n, np.bool_)
    digest = str(_scalar(z, "digest", np.str_))
    images = dict(zip(ids, (str(d) for d in _rows(z, "image_digests", n, np.str_)))) if "image_digests" in z else {}
    works: dict[str, RegionWork] = {}
    if labels:
        lab = _rows(z, "labels", int((~failed).sum()), np.integer, (size, size))
        if lab.size and (lab.min() < -1 or lab.max() >= n_regions):
            raise ValueError("region labels outside the vocabulary")
        rows = iter(lab)
        for k, i in enumerate(ids):
            works[i] = RegionWork(None, str(error[k]), bool(permanent[k])) if failed[k] else \
                RegionWork(next(rows).astype(np.int16), str(error[k]))
    else:
        for k, i in enumerate(ids):
            works[i] = RegionWork(None, str(error[k]), bool(permanent[k])) if failed[k] else \
                RegionWork(np.zeros((0, 0), np.int16), str(error[k]))
    return ChunkRegions(works, digest, images)


def _parse_attribution(z: Mapping[str, np.ndarray], heads: Mapping[str, int], n_regions: int | None, size: int,
                       maps: bool) -> ChunkAttribution:
    S = size
    ids = _ids(z)
    n = len(ids)
    digest = str(_scalar(z, "regions_digest", np.str_))
    sources = dict(zip(ids, (str(s) for s in _rows(z, "source_sha", n, np.str_)))) if "source_sha" in z else {}
    images = dict(zip(ids, (str(d) for d in _rows(z, "image_digests", n, np.str_)))) if "image_digests" in z else {}
    if n == 0:
        return ChunkAttribution({}, digest, {}, {})
    K = n_regions if n_regions is not None else int(z["n_pixels"].shape[1]) if z["n_pixels"].ndim == 2 else -1
    n_pixels = _rows(z, "n_pixels", n, np.integer, (K,))
    per_head = {}
    for h, n_classes in heads.items():
        target = _rows(z, f"target/{h}", n, np.integer)
        if n and (target.min() < 0 or target.max() >= n_classes):
            raise ValueError(f"targets of head {h!r} outside 0..{n_classes - 1}")
        cols: dict[str, Any] = {
            "target": target, "status": _rows(z, f"status/{h}", n, np.str_),
            "delta": _rows(z, f"delta/{h}", n, np.floating) if f"delta/{h}" in z else None,
            "scores": _rows(z, f"scores/{h}", n, np.floating, (K,)) if f"scores/{h}" in z else None,
            "stats": [_rows(z, f"{s}/{h}", n, np.floating, (K,)) for s in ("sum", "pos", "neg")],
            "total": _rows(z, f"total/{h}", n, np.floating),
            "unassigned": _rows(z, f"unassigned/{h}", n, np.floating, (4,)),
            "scale": _rows(z, f"scale/{h}", n, np.floating)}
        if maps:
            cols["map"] = _rows(z, f"exact/{h}", n, np.floating, (S, S)) if f"exact/{h}" in z else \
                _rows(z, f"map/{h}", n, np.integer, (S, S))
            cols["exact"] = f"exact/{h}" in z
        per_head[h] = cols
    works: dict[str, dict[str, HeadAttribution]] = {}
    for k, i in enumerate(ids):
        works[i] = {}
        for h, c in per_head.items():
            status = str(c["status"][k])
            delta = None if c["delta"] is None or not np.isfinite(c["delta"][k]) else float(c["delta"][k])
            if status != "ok":
                works[i][h] = HeadAttribution(int(c["target"][k]), status, delta=delta)
                continue
            s, p, ng = (a[k].astype(np.float64) for a in c["stats"])
            stats = RegionStats(n_pixels=n_pixels[k].astype(np.int64), sum=s, pos_sum=p, neg_sum=ng,
                                unassigned=c["unassigned"][k].astype(np.float64), total=float(c["total"][k]))
            values = None
            if maps:
                values = c["map"][k].astype(np.float64) if c["exact"] else \
                    decode_map(c["map"][k], float(c["scale"][k]))
                if not np.all(np.isfinite(values)):
                    raise ValueError(f"map of head {h!r} holds NaN or Inf but its status is ok")
            scores = None if c["scores"] is None else c["scores"][k].astype(np.float64)
            works[i][h] = HeadAttribution(int(c["target"][k]), status, values, float(c["scale"][k]), delta,
                                          scores, stats)
    return ChunkAttribution(works, digest, sources, images)


def _parse_validity(z: Mapping[str, np.ndarray], pairs: Sequence[tuple[str, str]]
                    ) -> tuple[dict[str, ValidityWork], str]:
    ids = _ids(z)
    n = len(ids)
    if n == 0:
        return {}, str(_scalar(z, "regions_digest", np.str_))
    nv = len(VALIDITY_VALUES)
    cols = {(m, h): (_rows(z, f"values/{m}/{h}", n, np.float64, (nv,)), _rows(z, f"note/{m}/{h}", n, np.str_))
            for m, h in pairs}
    out = {i: ValidityWork({p: (*(float(x) for x in v[k]), str(note[k]))
                            for p, (v, note) in cols.items()}) for k, i in enumerate(ids)}
    return out, str(_scalar(z, "regions_digest", np.str_))


def _attr_keys(heads: Mapping[str, int]) -> list[str]:
    """The members of an attribution file a table needs (everything but the maps)."""
    keys = ["ids", "regions_digest", "source_sha", "image_digests", "n_pixels"]
    for h in heads:
        keys += [f"{s}/{h}" for s in ("target", "status", "delta", "scores", "sum", "pos", "neg", "total",
                                      "unassigned", "scale")]
    return keys


def _scalar(z: Mapping[str, np.ndarray], key: str, kind: type) -> Any:
    """The 0-d array ``z[key]`` of dtype ``kind`` (``KeyError``/``ValueError`` otherwise)."""
    a = z[key]
    if a.ndim != 0 or not np.issubdtype(a.dtype, kind):
        raise ValueError(f"{key} must be a single {kind.__name__} value, got {a.dtype} {a.shape}")
    return a[()]


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
