"""External heatmaps (``--attributions FOLDER``): ``<folder>/<image file stem>.npz`` with one HxW array per head."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.engine.plan import PlannedInput
from semcontrib.imageio import sha256_file
from semcontrib.settings import (
    ExternalAttributions,
)

MAX_EXTERNAL_BYTES = 64 * 2**20  # one external heatmap file
MAX_EXTERNAL_SIDE = 8192


def external_source(ext: ExternalAttributions | None, member: PlannedInput) -> tuple[Path, str]:
    """The heatmap file of one input and its sha256 ("" when absent)."""
    assert ext is not None
    src = Path(ext.folder) / f"{member.entry.path.stem}.npz"
    try:
        return src, sha256_file(src) if src.is_file() else ""
    except OSError as exc:
        return src, f"unreadable: {exc}"


def read_external(src: Path, heads: Sequence[str], size: int) -> dict[str, np.ndarray]:
    """One image's external heatmaps, float64 size×size per head (``ValueError`` saying what is wrong).

    A map already ``size``×``size`` is used exactly as given. Any other H×W is resampled to
    ``size``×``size`` bilinearly (pixel centres aligned, as Pillow's ``resize``) and multiplied by
    ``H·W / size²``, so that its density is kept and its total is preserved up to interpolation.
    """
    if not src.is_file():
        raise ValueError(f"no heatmap file {src.name}")
    if src.stat().st_size > MAX_EXTERNAL_BYTES:
        raise ValueError(f"{src.name} is larger than {MAX_EXTERNAL_BYTES} bytes")
    try:
        z = cstore.read_npz(src)
    except cstore.CorpusError as exc:
        raise ValueError(f"{src.name}: not a readable .npz ({str(exc).split(': ', 2)[-1]})") from None
    out = {}
    for h in heads:
        if h not in z:
            raise ValueError(f"{src.name} has no array for head {h!r} (has {sorted(z)[:8]})")
        a = z[h]
        if a.ndim != 2 or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
            raise ValueError(f"{src.name}[{h!r}] must be a 2-D float array (H×W), got {a.dtype} {a.shape}")
        if min(a.shape) < 1 or max(a.shape) > MAX_EXTERNAL_SIDE:
            raise ValueError(f"{src.name}[{h!r}] has shape {a.shape}; sides must be 1..{MAX_EXTERNAL_SIDE}")
        a = a.astype(np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{src.name}[{h!r}] holds NaN or Inf")
        if a.shape != (size, size):
            img = Image.fromarray(a.astype(np.float32), mode="F").resize((size, size), Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.float64) * (a.shape[0] * a.shape[1] / (size * size))
        out[h] = a
    return out
