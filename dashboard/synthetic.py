"""A synthetic corpus written with the corpus writers, for tests, screenshots and the benchmark.

It has the layout and tables that ``semcontrib.pipeline`` writes (manifest, images, attributions,
contributions, display JPEGs, attribution and region maps), from seeded random data and without a
model, so a dashboard can start on it in a second.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.contributions import aggregate

SIZE = 224
DEFAULT_HEADS = {"nature": ["nature", "non-nature"], "biotic": ["biotic", "abiotic", "mixed"]}
DEFAULT_METHODS = ("lrp", "ig")
DEFAULT_VOCABULARY = ("sky", "water", "vegetation", "built", "person")
_COLOURS = np.array([[120, 170, 230], [40, 90, 160], [60, 140, 60], [150, 140, 130], [220, 170, 140]])


def _region_labels(rng: np.random.Generator, k: int) -> np.ndarray:
    """int32 224x224: horizontal bands of a random subset of the regions, one block left unassigned."""
    present = np.sort(rng.choice(k, size=rng.integers(2, k + 1), replace=False))
    cuts = np.sort(rng.choice(np.arange(20, SIZE - 20), size=len(present) - 1, replace=False))
    rows = np.searchsorted(cuts, np.arange(SIZE), side="right")
    labels = np.repeat(present[rows][:, None], SIZE, axis=1).astype(np.int32)
    labels[:16, :16] = -1
    return labels


def _attribution(rng: np.random.Generator, labels: np.ndarray, k: int) -> np.ndarray:
    """float64 224x224: a smooth signed map with a random level per region."""
    level = rng.normal(0, 1, k + 1)
    base = level[labels + 1]
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    bump = np.exp(-((x - rng.uniform()) ** 2 + (y - rng.uniform()) ** 2) / 0.02) * rng.normal(0, 3)
    return base + bump + rng.normal(0, 0.1, labels.shape)


def _photo(labels: np.ndarray, k: int) -> bytes:
    colours = np.vstack([_COLOURS[np.arange(k) % len(_COLOURS)], [[200, 200, 200]]])
    rgb = colours[labels].astype(np.uint8)  # -1 picks the last (grey) row
    img = Image.fromarray(rgb).resize((160, 120))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def write_synthetic_corpus(root: str | Path, n_images: int = 40, heads: dict[str, list[str]] | None = None,
                           methods: tuple[str, ...] = DEFAULT_METHODS,
                           vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY, seed: int = 0,
                           with_maps: bool = True, n_skipped: int = 1) -> Path:
    """Write a synthetic corpus into ``root`` and return ``root``.

    ``with_maps=False`` writes only the tables (statistics drawn directly), for large benchmark corpora.
    """
    root = Path(root)
    heads = dict(heads or DEFAULT_HEADS)
    rng = np.random.default_rng(seed)
    paths = cstore.StorePaths(root)
    K = len(vocabulary)
    mkey, rkey = "5e7a000000000000", "5e7a000000000001"  # store keys are 16 hex digits
    method_keys = {m: f"5e7a00000000{i + 16:04x}" for i, m in enumerate(methods)}
    ids = [f"img{i:06d}-{i * 2654435761 % 16 ** 10:010x}" for i in range(n_images)]
    cluster = rng.integers(0, 3, n_images)
    img_rows: list[dict[str, Any]] = []
    for i, image_id in enumerate(ids):
        row: dict[str, Any] = {"image_id": image_id, "path": f"/synthetic/{image_id}.jpg",
                               "sha256": "0" * 64, "width": 160, "height": 120, "status": "ok", "reason": "",
                               "original_mode": "RGB",
                               "label_scene": f"scene{cluster[i]}"}
        for h, classes in heads.items():
            row[f"pred_{h}"] = classes[(cluster[i] + i % 2) % len(classes)]
            row[f"prob_{h}"] = float(rng.uniform(0.4, 1.0))
        img_rows.append(row)
    for j in range(n_skipped):
        row = {"image_id": f"broken{j}-0000000000", "path": f"/synthetic/broken{j}.jpg", "sha256": "",
               "width": 0, "height": 0, "status": "skipped", "reason": "not an image", "original_mode": "",
               "label_scene": ""}
        for h in heads:
            row[f"pred_{h}"] = None
            row[f"prob_{h}"] = np.nan
        img_rows.append(row)

    n_groups = n_images * len(heads) * len(methods)
    stats = np.zeros((4, n_groups, K))
    attr_rows: list[dict[str, Any]] = []
    g = 0
    for i, image_id in enumerate(ids):
        labels = _region_labels(rng, K) if with_maps else None
        if with_maps:
            assert labels is not None
            cstore.write_bytes(paths.display(image_id), _photo(labels, K))
            cstore.write_npz(paths.regions("synthetic", rkey, image_id), {"labels": labels.astype(np.int16)})
        for m in methods:
            arrays: dict[str, np.ndarray] = {}
            for hi, (h, classes) in enumerate(heads.items()):
                target = classes.index(img_rows[i][f"pred_{h}"])
                if with_maps:
                    assert labels is not None
                    ramp = (np.arange(SIZE) / SIZE)[None, :] * (hi + 1)
                    amap = _attribution(rng, labels, K) + cluster[i] * ramp
                    f16, scale = cstore.encode_map(amap)
                    arrays.update({f"target/{h}": np.array(target, np.int64), f"map/{h}": f16,
                                   f"scale/{h}": np.array(scale, np.float32),
                                   f"status/{h}": np.array("ok")})
                    s = aggregate(cstore.decode_map(f16, float(scale)), labels, K)
                    stats[:, g] = [s.n_pixels, s.sum, s.pos_sum, s.neg_sum]
                    total, unassigned = s.total, s.unassigned
                else:
                    n = rng.integers(0, 3, K) * rng.integers(500, 20000, K)
                    centre = np.roll(np.linspace(-1, 1, K), int(cluster[i]))
                    mean = rng.normal(centre, 0.6)
                    pos = np.abs(rng.normal(0, 1, K)) * n * 1e-3 + np.maximum(mean, 0) * n * 1e-3
                    neg = -np.abs(rng.normal(0, 1, K)) * n * 1e-3 + np.minimum(mean, 0) * n * 1e-3
                    stats[:, g] = [n, pos + neg, pos, neg]
                    total, unassigned = float((pos + neg).sum()), np.zeros(4)
                attr_rows.append({"image_id": image_id, "head": h, "method": m, "target": classes[target],
                                  "target_index": target, "logit": float(rng.normal()), "status": "ok",
                                  "delta": float(rng.normal(0, 0.01)) if m == "ig" else np.nan,
                                  "total": float(total), "scale": 1.0, "unassigned_n": int(unassigned[0]),
                                  "unassigned_sum": float(unassigned[1]),
                                  "unassigned_pos": float(unassigned[2]),
                                  "unassigned_neg": float(unassigned[3])})
                g += 1
            if with_maps:
                cstore.write_npz(paths.attr(m, method_keys[m], image_id), arrays)

    groups = pd.DataFrame(attr_rows)
    contributions = pd.DataFrame({
        "image_id": np.repeat(groups["image_id"].to_numpy(), K),
        "head": np.repeat(groups["head"].to_numpy(), K),
        "method": np.repeat(groups["method"].to_numpy(), K),
        "target": np.repeat(groups["target"].to_numpy(), K),
        "target_index": np.repeat(groups["target_index"].to_numpy(), K),
        "region": np.tile(np.array(vocabulary, dtype=object), n_groups),
        "region_index": np.tile(np.arange(K), n_groups),
        "n_pixels": stats[0].ravel().astype(np.int64),
        "sum": stats[1].ravel(), "pos_sum": stats[2].ravel(), "neg_sum": stats[3].ravel(),
    })
    cstore.add_default_scores(contributions, K)
    cstore.write_table(root / "images.parquet", pd.DataFrame(img_rows))
    cstore.write_table(root / "attributions.parquet", groups)
    cstore.write_table(root / "contributions.parquet", contributions)
    manifest = {
        "format": cstore.CORPUS_FORMAT,
        "model": {"name": "synthetic", "key": mkey, "input_size": SIZE},
        "heads": heads,
        "methods": {m: {"params": {}, "key": method_keys[m], "notes": "synthetic"} for m in methods},
        "targets": "predicted class per head",
        "regions": {"name": "synthetic", "params": {}, "vocabulary": list(vocabulary), "key": rkey,
                    "unassigned_label": -1},
        "normalisation": {"stored": "mean basis: score_signed_l1, score_paper, score_pos, score_neg",
                          "map_encoding": "float16(map / scale), scale = max|map| (float32)"},
        "batch_size": 8,
        "packages": {},
    }
    cstore.write_json(root / cstore.MANIFEST, manifest)
    return root
