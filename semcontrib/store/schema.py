"""The corpus format's names: format version, file names, size limits, table columns, store paths and the
checks of every name part (keys, method and source names, image ids); the errors of the store."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CORPUS_FORMAT = "semcontrib-corpus/2"
MANIFEST = "manifest.json"
TABLES = ("images", "attributions", "contributions")
PARTITIONED = ("attributions", "contributions")  # hive-partitioned by head and method
RUN_LOCK = ".semcontrib.lock"
PLAN_LOCK = ".semcontrib.plan.lock"
TABLES_LOCK = ".semcontrib.tables.lock"
EDITS_LOCK = ".semcontrib.edits.lock"
GENERATION_META = b"semcontrib.generation"

# Upper bounds for anything read from a corpus (a stranger's corpus may be hostile).
MAX_ARRAY_BYTES = 256 * 2**20          # one array inside a work file
MAX_WORK_FILE_BYTES = 1024 * 2**20     # one work file (one chunk of one stage)
MAX_MANIFEST_BYTES = 64 * 2**20
MAX_DISPLAY_BYTES = 8 * 2**20          # one display JPEG
MAX_TABLE_BYTES = 16 * 2**30           # one table or part, uncompressed (a 1M-image part is about 1 GB)

# Columns of the tables (their one definition; the pipeline builds rows with exactly these).
IMAGE_COLUMNS = ("image_id", "path", "sha256", "width", "height", "status", "reason", "original_mode", "chunk")
# The numbers of a validity record (semcontrib.validity): faithfulness, MoRF and LeRF deletion AUCs, the
# insertion AUC (equal to the LeRF one) and the random-order reference of both AUCs.
VALIDITY_VALUES = ("faithfulness", "deletion_auc", "insertion_auc", "lerf_auc", "random_auc")
ATTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "logit", "status", "delta",
                       "total", "scale", "unassigned_n", "unassigned_sum", "unassigned_pos", "unassigned_neg",
                       "lrp_ratio", *VALIDITY_VALUES, "validity_note")
CONTRIBUTION_COLUMNS = ("image_id", "head", "method", "target", "target_index", "region", "region_index",
                        "n_pixels", "sum", "pos_sum", "neg_sum")
PLAN_COLUMNS = ("image_id", "chunk", "position", "path", "size", "mtime_ns", "sha256")

_KEY = re.compile(r"^[0-9a-f]{16}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_PART = re.compile(r"^(attributions|contributions)/head=[^/]{1,400}/method=[A-Za-z0-9_.%-]{1,200}/"
                   r"part-[0-9a-f]{32}\.parquet$")


class CorpusError(ValueError):
    """A directory is not a readable corpus, or one of its files is malformed."""


class CorpusBusyError(CorpusError):
    """Another run holds the corpus's writer lock."""


GENERATIONS = ".generations"


# --------------------------------------------------------------------------- store paths


@dataclass(frozen=True)
class StorePaths:
    """Where one corpus keeps its work files (see the module docs). Every name part is checked."""

    root: Path

    @property
    def store(self) -> Path:
        return self.root / "store"

    @property
    def plan(self) -> Path:
        return self.store / "plan"

    def images(self, chunk: int) -> Path:
        return self.store / "images" / _chunk_file(chunk)

    def pred(self, model_key: str, chunk: int) -> Path:
        return self.store / "pred" / _check_key(model_key) / _chunk_file(chunk)

    def attr(self, method: str, key: str, chunk: int) -> Path:
        return self.store / "attr" / f"{_check_name(method)}-{_check_key(key)}" / _chunk_file(chunk)

    def regions(self, source: str, key: str, chunk: int) -> Path:
        return self.store / "regions" / f"{_check_name(source)}-{_check_key(key)}" / _chunk_file(chunk)

    def validity(self, key: str, chunk: int) -> Path:
        return self.store / "validity" / _check_key(key) / _chunk_file(chunk)

    @property
    def dashboard_cache(self) -> Path:
        """The dashboard's own cache folder (embeddings); never read by the analysis."""
        return self.root / "dashboard"


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) whose resolved location lies inside ``root``: the
    corpus never writes links, so one in a corpus someone gives you is not followed."""
    try:
        return not path.is_symlink() and Path(root).resolve() in path.resolve().parents
    except (OSError, RuntimeError):
        return False


def _chunk_file(chunk: int) -> str:
    if not isinstance(chunk, (int, np.integer)) or isinstance(chunk, bool) or not 0 <= int(chunk) < 10**9:
        raise CorpusError(f"invalid chunk index {chunk!r}")
    return f"{int(chunk):06d}.npz"


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise CorpusError(f"invalid store key {key!r} (16 hex digits expected)")
    return key


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise CorpusError(f"invalid name {name!r} in the corpus")
    return name


def check_image_id(image_id: str) -> str:
    """An image id is safe as a file name: letters, digits, ``_ . -``, not starting with a dot."""
    if not isinstance(image_id, str) or not _ID.match(image_id):
        raise ValueError(f"invalid image id {image_id!r}")
    return image_id
