"""Inputs: a folder, a CSV of image paths (with label columns) or a list of paths -> :class:`InputEntry` rows;
image ids.

A folder's listing is an :class:`InputList`: the files as columns (relative paths, sizes and modification
times from one ``os.scandir`` walk) that reads as a sequence of :class:`InputEntry`, made one at a time
when asked for; the planner reads its columns and makes none.
"""

from __future__ import annotations

import csv
import functools
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

import numpy as np

from semcontrib.engine.workers import (  # per-image work, in worker processes that never import torch
    _one_line,
    path_text,
)
from semcontrib.imageio import ImageScan, scan_images


@dataclass(frozen=True)
class InputEntry:
    """One image to analyse: its path and optional label columns."""

    path: Path
    labels: Mapping[str, str] = field(default_factory=dict)


class InputList(Sequence[InputEntry]):
    """The image files of a folder as columns (an :class:`~semcontrib.imageio.ImageScan`), read as a
    sequence of :class:`InputEntry` (no labels), each made when asked for.

    ``exclude`` is the real path (with a trailing separator) whose files were left out while listing.
    """

    def __init__(self, scan: ImageScan, exclude: str | None = None) -> None:
        self.scan = scan
        self.exclude = exclude

    def __len__(self) -> int:
        return len(self.scan.relative)

    @overload
    def __getitem__(self, k: int) -> InputEntry: ...

    @overload
    def __getitem__(self, k: slice) -> list[InputEntry]: ...

    def __getitem__(self, k: int | slice) -> InputEntry | list[InputEntry]:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        return InputEntry(Path(os.path.join(self.scan.folder, self.scan.relative[k])))

    def __iter__(self) -> Iterator[InputEntry]:
        folder = self.scan.folder
        return (InputEntry(Path(os.path.join(folder, r))) for r in self.scan.relative.tolist())

    def __repr__(self) -> str:
        return f"InputList({self.scan.folder!r}, {len(self)} images)"

    def take(self, rows: np.ndarray) -> list[InputEntry]:
        """The entries of ``rows`` (int (m,))."""
        folder, rel = self.scan.folder, self.scan.relative
        return [InputEntry(Path(os.path.join(folder, r))) for r in rel[rows].tolist()]

    def without(self, exclude: Path) -> InputList:
        """The files whose real location is not under ``exclude`` (the same list when it was listed so)."""
        ex = os.path.join(os.path.realpath(exclude), "")
        if ex == self.exclude:
            return self
        _real_folder.cache_clear()  # links may have changed since the last listing
        keep = np.fromiter((not _real_path(Path(os.path.join(self.scan.folder, r))).startswith(ex)
                            for r in self.scan.relative.tolist()), bool, len(self))
        s = self.scan
        return InputList(ImageScan(s.folder, s.relative[keep], s.size[keep], s.mtime_ns[keep]), ex)


# --------------------------------------------------------------------------- inputs


def _text_of(path: str) -> str:
    """:func:`path_text` of a path string (the common case, valid UTF-8, costs one check)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path_text(Path(path))


def read_inputs(inputs: str | Path | Sequence[str | Path | InputEntry], exclude: Path | None = None
                ) -> Sequence[InputEntry]:
    """A folder (recursive, image suffixes), a CSV of image paths, or a list of paths.

    The CSV needs a ``path`` column (or, failing that, its first column); relative paths are taken
    relative to the CSV's folder; every other column is kept as a label column. Files under
    ``exclude`` (the corpus being written) are never inputs. A folder gives an :class:`InputList`
    (columns; entries made when asked for), anything else a list of :class:`InputEntry`.
    """
    if isinstance(inputs, InputList):
        return inputs if exclude is None else inputs.without(exclude)
    if isinstance(inputs, (list, tuple)):
        entries = [p if isinstance(p, InputEntry) else InputEntry(Path(p)) for p in inputs]
    else:
        src = Path(inputs)  # type: ignore[arg-type]
        if src.is_dir():  # the corpus's folder is left out while listing
            ex = os.path.join(os.path.realpath(exclude), "") if exclude is not None else None
            return InputList(scan_images(src, exclude=exclude), ex)
        if src.is_file() and src.suffix.lower() == ".csv":
            entries = _read_csv(src)
        elif src.is_file():
            entries = [InputEntry(src)]
        elif not src.exists():
            raise FileNotFoundError(f"input {src} does not exist")
        else:
            raise ValueError(f"input {src} is neither a folder, a CSV file nor an image file")
    if exclude is not None:
        ex = os.path.join(os.path.realpath(exclude), "")
        _real_folder.cache_clear()  # links may have changed since the last listing
        entries = [e for e in entries if not _real_path(e.path).startswith(ex)]
    return entries


@functools.lru_cache(maxsize=4096)
def _real_folder(folder: str) -> str:
    return os.path.realpath(folder)


def _real_path(path: Path) -> str:
    """``os.path.realpath(path)``, resolving each folder once (a file's own link is still followed)."""
    text = os.fspath(path)
    if os.path.islink(text):
        return os.path.realpath(text)
    folder, name = os.path.split(os.path.abspath(text))
    return os.path.join(_real_folder(folder), name)


def _read_csv(src: Path) -> list[InputEntry]:
    try:
        return _parse_csv(src)
    except (csv.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"{src}: not a readable CSV ({_one_line(exc)})") from None


def _parse_csv(src: Path) -> list[InputEntry]:
    with open(src, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames:
            raise ValueError(f"{src}: empty CSV")
        col = "path" if "path" in reader.fieldnames else reader.fieldnames[0]
        entries = []
        for row in reader:
            raw = (row.get(col) or "").strip()
            if not raw:
                continue
            p = Path(raw)
            if not p.is_absolute():
                p = src.parent / p
            labels = {k: (v or "") for k, v in row.items() if k != col and k is not None}
            entries.append(InputEntry(p, labels))
        return entries


def checked_inputs(inputs: str | Path | Sequence[str | Path | InputEntry], out: Path) -> Sequence[InputEntry]:
    """:func:`read_inputs` without the corpus's own files; ``ValueError`` when nothing is left."""
    if isinstance(inputs, (str, Path)) and Path(inputs).resolve() == Path(out).resolve():
        raise ValueError(f"--out {out} is the input folder; give the corpus a folder of its own "
                         "(it may lie inside the input folder)")
    entries = read_inputs(inputs, exclude=Path(out))
    if not entries:
        where = "the list given" if isinstance(inputs, (list, tuple)) else \
            inputs.scan.folder if isinstance(inputs, InputList) else str(inputs)
        raise ValueError(f"no images found in {where} (looked for files ending in "
                         ".jpg, .jpeg, .png, .bmp, .gif, .tif, .tiff, .webp, .ppm, .pgm)")
    return entries


_SLUG = re.compile(r"[^A-Za-z0-9_-]+")


def make_image_id(path: Path, sha256: str) -> str:
    """``<file stem, slugged>-<first 10 hex digits of the content sha256>``."""
    stem = _SLUG.sub("_", path_text(Path(path.stem))).strip("_-")[:48] or "image"
    return f"{stem}-{sha256[:10]}"
