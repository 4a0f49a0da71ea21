"""Loading images: file -> RGB uint8 HxWx3 under documented conversion rules.

Rules (applied in this order):

1. The file must be a raster image Pillow can identify; otherwise it is skipped ("not an image").
2. Images with more than ``max_pixels`` pixels (default 64 megapixels) are skipped as possible
   decompression bombs, before any pixel is decoded.
3. Truncated or corrupt files are skipped with Pillow's message.
4. EXIF orientation is applied (``ImageOps.exif_transpose``), so the array is upright.
5. Colour conversion to RGB:
   - ``1``, ``L``: grey replicated to three channels;
   - ``P`` / ``PA`` (palette): expanded through the palette (transparency honoured as in 6);
   - ``RGBA``, ``LA``, ``RGBa``: alpha composited over white;
   - ``CMYK``, ``YCbCr``, ``LAB``, ``HSV``: Pillow's conversion to RGB;
   - 16-bit grey (``I;16*``) and 32-bit integer grey (``I``): scaled by 255/65535 and rounded
     (integer images whose maximum is at most 255 are taken as already 8-bit);
   - float grey (``F``): values in [0, 1] scaled by 255, otherwise clipped to [0, 255].
6. Images smaller than ``min_side`` (default 8) pixels on a side are skipped ("too small").

Every failure, whatever exception Pillow or numpy raises while reading, converting or decoding
one image (also ``MemoryError``), becomes an :class:`ImageLoadError` whose ``reason`` is one line;
loading one bad file never ends a run.

File names need not be valid UTF-8: :func:`list_images` returns them as Python gives them
(``Path`` with lone surrogates, ``surrogateescape``), they load like any other, and
:func:`display_name` gives a printable, UTF-8-encodable form for messages and tables.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_MAX_PIXELS = 64_000_000
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


class ImageLoadError(ValueError):
    """An image could not be used; ``reason`` says why in a few words (one line)."""

    def __init__(self, path: str | Path, reason: str) -> None:
        reason = _one_line(reason)
        super().__init__(f"{display_name(path)}: {reason}")
        self.path = str(path)
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # picklable with both arguments (worker processes)
        return (type(self), (self.path, self.reason))


def display_name(path: str | os.PathLike[str]) -> str:
    """A printable, UTF-8-encodable form of a file name, for messages and tables.

    Bytes that are not valid UTF-8 (lone surrogates from ``surrogateescape``) become ``\\xNN``;
    other characters that are not printable (newline, tab, control characters, unpaired
    surrogates) become ``\\n``, ``\\t``, ``\\r`` or ``\\xNN`` / ``\\uNNNN``; everything else,
    including non-ASCII letters, is kept.

    Examples
    --------
    >>> display_name("caf\u00e9.jpg")
    'caf\u00e9.jpg'
    >>> print(display_name(os.fsdecode(b"bad\\xff\\nname.png")))
    bad\\xff\\nname.png
    """
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, as surrogateescape stores it
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code <= 0xFF:
            out.append(f"\\x{code:02x}")
        else:
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
    return "".join(out)


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _one_line(text: str) -> str:
    """Whitespace (newlines included) collapsed to single spaces, cut to 300 characters."""
    line = " ".join(str(text).split())
    return line if len(line) <= 300 else line[:297] + "..."


@dataclass(frozen=True)
class LoadedImage:
    """An image ready for analysis.

    Attributes
    ----------
    rgb : uint8 HxWx3, upright, RGB.
    original_mode : Pillow's mode of the file (``"RGB"``, ``"CMYK"``, ``"I;16"``, ...).
    orientation : the EXIF orientation tag that was applied (1 = none).
    """

    rgb: np.ndarray
    original_mode: str
    orientation: int


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _to_rgb(img: Image.Image) -> np.ndarray:
    mode = img.mode
    if mode in ("P", "PA"):
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"), dtype=np.uint8)
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if mode == "I" and arr.size and arr.max() <= 255 and arr.min() >= 0:
            grey = arr
        else:
            grey = arr * (255.0 / 65535.0)
        grey = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img).astype(np.float64)
        arr = np.nan_to_num(arr, nan=0.0, posinf=255.0, neginf=0.0)
        if arr.size and arr.min() >= 0 and arr.max() <= 1:
            arr = arr * 255.0
        grey = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, min_side: int = 8) -> LoadedImage:
    """Read ``path`` as upright RGB uint8 HxWx3, or raise :class:`ImageLoadError` with the reason.

    The size in the file's header is checked against ``max_pixels`` before any pixel is decoded.
    Any exception raised while opening, decoding or converting becomes an :class:`ImageLoadError`
    (``reason`` one line), so a hostile or broken file never escapes as another exception type.
    """
    path = Path(path)
    try:
        if not path.is_file():
            raise ImageLoadError(path, "file not found")
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise ImageLoadError(path, f"decompression bomb: {w}x{h} pixels exceeds {max_pixels}")
                mode = img.mode
                img.load()
                orientation = _orientation(img)
                upright = ImageOps.exif_transpose(img) if orientation != 1 else img
                rgb = _to_rgb(upright)
    except ImageLoadError:
        raise
    except UnidentifiedImageError:
        raise ImageLoadError(path, "not an image (unidentified format)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageLoadError(path, f"decompression bomb: {exc}") from None
    except MemoryError:
        raise ImageLoadError(path, "unreadable image: out of memory while decoding") from None
    except OSError as exc:
        raise ImageLoadError(path, f"unreadable image: {exc.strerror or exc}") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this image's reason, never the run's end
        raise ImageLoadError(path, f"unreadable image: {type(exc).__name__}: {exc}") from None
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageLoadError(path, f"unsupported layout {rgb.shape}")
    if min(rgb.shape[:2]) < min_side:
        raise ImageLoadError(path, f"too small: {rgb.shape[1]}x{rgb.shape[0]} (minimum side {min_side})")
    return LoadedImage(np.ascontiguousarray(rgb), mode, orientation)


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation tag (1..8), 1 when absent or not a valid orientation."""
    value = img.getexif().get(0x0112, 1)
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def resize_rgb(rgb: np.ndarray, size: int) -> np.ndarray:
    """Squash uint8 HxWx3 to ``size`` x ``size`` (bicubic), the model's input layout."""
    if rgb.shape[:2] == (size, size):
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size, size), Image.Resampling.BICUBIC), dtype=np.uint8)


@dataclass(frozen=True)
class ImageScan:
    """The image files under a folder, as columns, sorted by relative path.

    Attributes
    ----------
    folder : the folder as given (``os.fspath``); a file's path is ``os.path.join(folder, relative)``.
    relative : object (n,): relative paths (``str``, ``/``-separated; undecodable bytes as lone surrogates).
    size : int64 (n,): file sizes in bytes, -1 where the file could not be ``stat``-ed while listing.
    mtime_ns : int64 (n,): modification times in nanoseconds (0 where ``size`` is -1).
    """

    folder: str
    relative: np.ndarray
    size: np.ndarray
    mtime_ns: np.ndarray

    def __len__(self) -> int:
        return len(self.relative)

    def paths(self) -> list[Path]:
        """The files as ``Path`` objects (one Python object per file: for small listings)."""
        return [Path(os.path.join(self.folder, r)) for r in self.relative.tolist()]


_SUFFIXES = frozenset(IMAGE_SUFFIXES)


def scan_images(folder: str | Path, exclude: str | Path | None = None) -> ImageScan:
    """Files under ``folder`` (recursive) with an image suffix, with their sizes and modification times.

    One ``os.scandir`` walk: each file's size and time come from its directory entry (``DirEntry.stat``, one
    ``stat`` call and no ``Path`` per file), and the relative paths are sorted as text. Names that are not
    valid UTF-8 or contain newlines are listed like any other (lone surrogates, as Python decodes them).
    Links to folders are not followed (links to files are). Nothing whose real location lies in ``exclude``
    is listed, and a folder there is not even read; one ``realpath`` per folder.
    """
    top0 = os.fspath(folder)
    ex = os.path.join(os.path.realpath(exclude), "") if exclude is not None else None
    rel_found: list[str] = []
    sizes: list[int] = []
    times: list[int] = []
    suffixes, splitext = _SUFFIXES, os.path.splitext
    stack = [(top0, "")]
    while stack:
        top, rel = stack.pop()
        if ex is not None and os.path.join(os.path.realpath(top), "").startswith(ex):
            continue
        try:
            with os.scandir(top) as it:
                for e in it:
                    name = e.name
                    try:
                        if e.is_dir(follow_symlinks=False):
                            stack.append((e.path, f"{rel}{name}/"))
                        # the suffix as os.path.splitext finds it (leading dots start no suffix)
                        elif name[name.rfind("."):].lower() in suffixes and (name[0] != "." or splitext(name)[1]) \
                                and e.is_file() and (ex is None or not e.is_symlink()
                                                     or not os.path.realpath(e.path).startswith(ex)):
                            try:
                                st = e.stat()
                                size, mtime = st.st_size, st.st_mtime_ns
                            except OSError:  # gone since: the planner says why
                                size, mtime = -1, 0
                            rel_found.append(rel + name)
                            sizes.append(size)
                            times.append(mtime)
                    except OSError:
                        continue
        except OSError:
            if not rel:
                raise
    relative = np.empty(len(rel_found), object)
    relative[:] = rel_found
    order = _text_order(rel_found)
    return ImageScan(top0, relative[order], np.asarray(sizes, np.int64)[order], np.asarray(times, np.int64)[order])


def _text_order(texts: list[str]) -> np.ndarray:
    """The indices that sort ``texts`` as Python sorts ``str`` (by code point): Arrow's sort of the UTF-8
    bytes (the same order), or Python's when a text holds lone surrogates (undecodable file names)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return np.asarray(pc.sort_indices(pa.array(texts, pa.string())), np.int64)
    except UnicodeEncodeError:
        return np.asarray(sorted(range(len(texts)), key=texts.__getitem__), np.int64)


def list_images(folder: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """Files under ``folder`` (recursive) with an image suffix, sorted by relative path.

    Names that are not valid UTF-8 or contain newlines are listed like any other (as ``Path`` with
    lone surrogates, as Python decodes them); use :func:`display_name` to show them. Links to folders
    are not followed (links to files are). Nothing whose real location lies in ``exclude`` is listed,
    and a folder there is not even read. :func:`scan_images` gives the same files as columns.
    """
    return scan_images(folder, exclude).paths()
