"""The corpus store: the only module that reads and writes result files.

Layout of a corpus directory (Parquet tables readable by pandas and DuckDB)::

    CORPUS/
      manifest.json            model identity and weight hash, heads and classes, methods and their
                               parameters, region source and vocabulary, package versions, store keys
      images.parquet           one row per input image (status ok / skipped, reason, predictions)
      attributions.parquet     one row per (image, head, method): target, logit, map total,
                               IG delta, unassigned statistics, status (ok / nonfinite)
      contributions.parquet    long format: one row per (image, head, method, region): raw
                               statistics and the default normalised scores
      store/                   per-image work files, each written atomically, keyed by parameters:
        images/<id>.json         image record
        display/<id>.jpg         the photograph for display (upright RGB, long side <= 512 px)
        pred/<model>/<id>.npz    logits per head, class evidence maps
        attr/<method>-<key>/<id>.npz   float16 maps at model resolution, scaled per map
        regions/<source>-<key>/<id>.npz  int16 region label map at model resolution

Maps are stored as ``float16(map / scale)`` with ``scale = max|map|`` (float32). The decoded map
``float64(f16) * scale`` is the canonical map: region statistics are computed from it, so they can be
recomputed from the store at any time and a resumed run reproduces them bit for bit.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from semcontrib.contributions import BASES, NORMALISATIONS, normalise
from semcontrib.regions import RegionMap

CORPUS_FORMAT = "semcontrib-corpus/1"
MANIFEST = "manifest.json"
TABLES = ("images", "attributions", "contributions")


# --------------------------------------------------------------------------- atomic writes


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, obj: Any) -> None:
    _atomic_write(Path(path), (json.dumps(obj, indent=1, sort_keys=True, default=str) + "\n").encode())


def write_npz(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **dict(arrays))  # type: ignore[arg-type]  # numpy stubs: allow_pickle kw
    _atomic_write(Path(path), buf.getvalue())


def read_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_table(path: Path, df: pd.DataFrame) -> None:
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    _atomic_write(Path(path), buf.getvalue())


def write_bytes(path: Path, data: bytes) -> None:
    _atomic_write(Path(path), data)


# --------------------------------------------------------------------------- map encoding


def encode_map(values: np.ndarray) -> tuple[np.ndarray, np.float32]:
    """float HxW (finite) -> (float16 HxW in [-1, 1], float32 scale)."""
    scale = np.float32(np.max(np.abs(values))) if values.size else np.float32(0)
    if scale == 0 or not np.isfinite(scale):
        return np.zeros(values.shape, np.float16), np.float32(0 if scale == 0 else scale)
    return (values.astype(np.float64) / float(scale)).astype(np.float16), scale


def decode_map(f16: np.ndarray, scale: float) -> np.ndarray:
    """The canonical map, float64 HxW."""
    return f16.astype(np.float64) * float(np.float32(scale))


# --------------------------------------------------------------------------- store paths


@dataclass(frozen=True)
class StorePaths:
    """Where one corpus keeps its work files (see the module docs)."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    def image_record(self, image_id: str) -> Path:
        return self.store / "images" / f"{image_id}.json"

    def display(self, image_id: str) -> Path:
        return self.store / "display" / f"{image_id}.jpg"

    def pred(self, model_key: str, image_id: str) -> Path:
        return self.store / "pred" / model_key / f"{image_id}.npz"

    def attr(self, method: str, key: str, image_id: str) -> Path:
        return self.store / "attr" / f"{method}-{key}" / f"{image_id}.npz"

    def regions(self, source: str, key: str, image_id: str) -> Path:
        return self.store / "regions" / f"{source}-{key}" / f"{image_id}.npz"


# --------------------------------------------------------------------------- reading


class CorpusError(ValueError):
    """A directory is not a readable corpus."""


class Corpus:
    """Read access to a corpus directory.

    Examples
    --------
    >>> corpus = Corpus.open("demo_corpus")                       # doctest: +SKIP
    >>> corpus.contribution_table("nature", "lrp", wide=True)     # doctest: +SKIP
    """

    def __init__(self, root: Path, manifest: dict[str, Any]) -> None:
        self.root = Path(root)
        self.manifest = manifest
        self.paths = StorePaths(self.root)

    @classmethod
    def open(cls, root: str | Path) -> Corpus:
        root = Path(root)
        mpath = root / MANIFEST
        if not mpath.is_file():
            raise CorpusError(f"{root} is not a corpus (no {MANIFEST}); run `semcontrib analyze` first")
        manifest = json.loads(mpath.read_text())
        if manifest.get("format") != CORPUS_FORMAT:
            raise CorpusError(f"{mpath}: unknown corpus format {manifest.get('format')!r}")
        for t in TABLES:
            if not (root / f"{t}.parquet").is_file():
                raise CorpusError(f"{root}: missing {t}.parquet")
        return cls(root, manifest)

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

    # ---- tables
    @cached_property
    def images(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "images.parquet")

    @cached_property
    def attributions(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "attributions.parquet")

    @cached_property
    def contributions(self) -> pd.DataFrame:
        return pd.read_parquet(self.root / "contributions.parquet")

    def image_ids(self) -> list[str]:
        ok = self.images[self.images["status"] == "ok"]
        return ok["image_id"].tolist()

    # ---- per-image files
    def attribution_map(self, image_id: str, head: str, method: str) -> np.ndarray | None:
        """The stored map, float64 HxW at model resolution, or None (absent or non-finite)."""
        if method not in self.manifest["methods"]:
            raise ValueError(f"unknown method {method!r}; corpus has {self.methods}")
        key = self.manifest["methods"][method]["key"]
        path = self.paths.attr(method, key, _check_id(image_id))
        if not path.is_file():
            return None
        z = read_npz(path)
        if f"map/{head}" not in z or str(z[f"status/{head}"]) != "ok":
            return None
        return decode_map(z[f"map/{head}"], float(z[f"scale/{head}"]))

    def region_map(self, image_id: str) -> RegionMap | None:
        reg = self.manifest["regions"]
        path = self.paths.regions(reg["name"], reg["key"], _check_id(image_id))
        if not path.is_file():
            return None
        z = read_npz(path)
        if "labels" not in z:
            return None
        return RegionMap(z["labels"].astype(np.int32), tuple(reg["vocabulary"]))

    def display_path(self, image_id: str) -> Path | None:
        """Path of the stored display JPEG of a known image id (never built from user input)."""
        if image_id not in set(self.images["image_id"]):
            return None
        p = self.paths.display(image_id)
        return p if p.is_file() else None

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


def _check_id(image_id: str) -> str:
    if not isinstance(image_id, str) or not image_id or "/" in image_id or "\\" in image_id \
            or image_id.startswith("."):
        raise ValueError(f"invalid image id {image_id!r}")
    return image_id


def open_corpus(root: str | Path) -> Corpus:
    """Open a corpus directory for reading."""
    return Corpus.open(root)
