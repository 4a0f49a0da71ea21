"""A synthetic corpus written with the corpus writers: for ``semcontrib demo --synthetic N``, tests,
screenshots and the benchmark.

It has the layout and tables that ``semcontrib.pipeline`` writes (manifest, images, attributions with a
validity record, contributions; display JPEGs, attribution and region maps for the first images), from
seeded random data and without a model, and its manifest says ``"synthetic": true`` so the dashboard
labels it. Images beyond ``SyntheticSpec.n_maps`` get table rows only (drawn in bulk, vectorised), so a
million-image corpus is written in about a minute.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
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
_FEW_REGIONS = "fewer than 3 regions present"


@dataclass(frozen=True)
class SyntheticSpec:
    """What to write.

    Attributes
    ----------
    n_images : images analysed (status ok); ``n_skipped`` more are recorded as skipped.
    heads : head -> class names; ``methods`` and ``vocabulary`` (region names) as in a real corpus.
    n_maps : how many of the images get a display photo, attribution maps and a region map (the rest
        have table rows only); None = all.
    seed : of every random draw.
    """

    n_images: int = 40
    heads: dict[str, list[str]] = field(default_factory=lambda: dict(DEFAULT_HEADS))
    methods: tuple[str, ...] = DEFAULT_METHODS
    vocabulary: tuple[str, ...] = DEFAULT_VOCABULARY
    n_maps: int | None = None
    seed: int = 0
    n_skipped: int = 1


DEMO_VOCABULARY = ("sky", "water", "vegetation", "bare_ground", "built", "person", "animal", "other")
DEMO_HEADS = {"landscape": ["forest", "coast", "mountain", "urban", "field"], "nature": ["nature", "non_nature"]}
DEMO_MAPS = 500


def demo_spec(n_images: int) -> SyntheticSpec:
    """What ``semcontrib demo --synthetic N`` writes: 2 heads, 3 methods, 8 regions, photos and maps for the
    first 500 images, 3 skipped images."""
    return SyntheticSpec(n_images=n_images, heads=dict(DEMO_HEADS), methods=("lrp", "gradcam", "ig"),
                         vocabulary=DEMO_VOCABULARY, n_maps=min(n_images, DEMO_MAPS), n_skipped=3)


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


def _images_table(spec: SyntheticSpec, ids: np.ndarray, cluster: np.ndarray, rng: np.random.Generator
                  ) -> pd.DataFrame:
    n = len(ids)
    data: dict[str, Any] = {"image_id": ids, "path": np.char.add(np.char.add("/synthetic/", ids.astype(str)), ".jpg"),
                            "sha256": "0" * 64, "width": 160, "height": 120, "status": "ok", "reason": "",
                            "original_mode": "RGB", "label_scene": np.char.add("scene", cluster.astype(str))}
    for h, classes in spec.heads.items():
        data[f"pred_{h}"] = np.asarray(classes, dtype=object)[(cluster + np.arange(n) % 2) % len(classes)]
        data[f"prob_{h}"] = rng.uniform(0.4, 1.0, n)
    frame = pd.DataFrame(data)
    skipped = pd.DataFrame({"image_id": [f"broken{j}-0000000000" for j in range(spec.n_skipped)],
                            "path": [f"/synthetic/broken{j}.jpg" for j in range(spec.n_skipped)], "sha256": "",
                            "width": 0, "height": 0, "status": "skipped",
                            "reason": ["not an image" if j % 2 == 0 else "truncated file"
                                       for j in range(spec.n_skipped)], "original_mode": "", "label_scene": ""})
    for h in spec.heads:
        skipped[f"pred_{h}"] = None
        skipped[f"prob_{h}"] = np.nan
    return pd.concat([frame, skipped], ignore_index=True) if spec.n_skipped else frame


def _bulk_stats(rng: np.random.Generator, cluster: np.ndarray, K: int) -> np.ndarray:
    """float64 4 x G x K (n_pixels, sum, pos_sum, neg_sum) drawn in bulk for G groups."""
    G = len(cluster)
    n = rng.integers(0, 3, (G, K)) * rng.integers(500, 20000, (G, K))
    centre = np.stack([np.roll(np.linspace(-1, 1, K), int(c)) for c in range(3)])[cluster]
    mean = rng.normal(centre, 0.6)
    pos = np.abs(rng.normal(0, 1, (G, K))) * n * 1e-3 + np.maximum(mean, 0) * n * 1e-3
    neg = -np.abs(rng.normal(0, 1, (G, K))) * n * 1e-3 + np.minimum(mean, 0) * n * 1e-3
    return np.stack([n, pos + neg, pos, neg]).astype(np.float64)


def _validity(rng: np.random.Generator, n_present: np.ndarray, method_index: int, cluster: np.ndarray
              ) -> dict[str, np.ndarray]:
    """Validity columns: faithfulness in [-1, 1] (NaN with a note below 3 regions), AUCs in [0, 1]."""
    G = len(n_present)
    centre = 0.55 - 0.35 * method_index + 0.1 * (cluster - 1)
    faith = np.tanh(rng.normal(np.arctanh(np.clip(centre, -0.9, 0.9)), 0.5, G))
    few = n_present < 3
    faith[few] = np.nan
    deletion = np.clip(rng.beta(2, 5, G) + 0.1 * method_index, 0, 1)
    insertion = np.clip(rng.beta(5, 2, G) - 0.1 * method_index, 0, 1)
    return {"faithfulness": faith, "deletion_auc": deletion, "insertion_auc": insertion,
            "validity_note": np.where(few, _FEW_REGIONS, "")}


def write_synthetic_corpus(root: str | Path, spec: SyntheticSpec | None = None, **kwargs: Any) -> Path:
    """Write a synthetic corpus into ``root`` and return ``root``.

    ``spec`` (or its fields as keyword arguments) says what to write; see :class:`SyntheticSpec`.
    """
    spec = spec or SyntheticSpec(**kwargs)
    root = Path(root)
    heads, methods, vocabulary = dict(spec.heads), tuple(spec.methods), tuple(spec.vocabulary)
    N, K = spec.n_images, len(vocabulary)
    n_maps = N if spec.n_maps is None else min(N, spec.n_maps)
    rng = np.random.default_rng(spec.seed)
    paths = cstore.StorePaths(root)
    rkey = "5e7a000000000001"  # store keys are 16 hex digits
    method_keys = {m: f"5e7a00000000{i + 16:04x}" for i, m in enumerate(methods)}
    ids = np.array([f"img{i:07d}-{i * 2654435761 % 16 ** 10:010x}" for i in range(N)], dtype=object)
    cluster = rng.integers(0, 3, N)
    images = _images_table(spec, ids, cluster, rng)
    head_names = list(heads)
    # group g = (image i, method m, head h), image-major as the pipeline writes them
    H, M = len(heads), len(methods)
    stats = np.zeros((4, N * M * H, K))
    totals = np.zeros(N * M * H)
    unassigned = np.zeros((N * M * H, 4))
    work = cstore.WorkStore(root, SIZE)
    for i in range(n_maps):
        labels = _region_labels(rng, K)
        cstore.write_bytes(paths.display(str(ids[i])), _photo(labels, K))
        work.write_regions("synthetic", rkey, str(ids[i]), cstore.RegionWork(labels.astype(np.int16)))
        for mi, m in enumerate(methods):
            heads_work: dict[str, cstore.HeadAttribution] = {}
            for hi, (h, classes) in enumerate(heads.items()):
                g = (i * M + mi) * H + hi
                target = classes.index(str(images.at[i, f"pred_{h}"]))
                ramp = (np.arange(SIZE) / SIZE)[None, :] * (hi + 1)
                amap = _attribution(rng, labels, K) + cluster[i] * ramp
                f16, scale = cstore.encode_map(amap)
                canonical = cstore.decode_map(f16, float(scale))  # what the store gives back
                heads_work[h] = cstore.HeadAttribution(target, "ok", canonical)
                s = aggregate(canonical, labels, K)
                stats[:, g] = [s.n_pixels, s.sum, s.pos_sum, s.neg_sum]
                totals[g], unassigned[g] = s.total, s.unassigned
            work.write_attribution(m, method_keys[m], str(ids[i]), heads_work)
    if n_maps < N:
        rest = np.arange(n_maps * M * H, N * M * H)
        bulk = _bulk_stats(rng, cluster[rest // (M * H)], K)
        stats[:, rest] = bulk
        totals[rest] = bulk[1].sum(axis=1)

    g_image = np.repeat(np.arange(N), M * H)
    g_method = np.tile(np.repeat(np.arange(M), H), N)
    g_head = np.tile(np.arange(H), N * M)
    targets = np.empty(len(g_image), dtype=object)
    target_index = np.zeros(len(g_image), dtype=np.int64)
    for hi, (h, classes) in enumerate(heads.items()):
        sel = g_head == hi
        pred = images[f"pred_{h}"].to_numpy(dtype=object)[:N][g_image[sel]]
        targets[sel] = pred
        lookup = {c: k for k, c in enumerate(classes)}
        target_index[sel] = [lookup[p] for p in pred] if N < 1000 else pd.Series(pred).map(lookup).to_numpy()
    n_present = (stats[0] > 0).sum(axis=1)
    validity: dict[str, np.ndarray] = {c: np.empty(len(g_image), dtype=object if c == "validity_note" else float)
                                       for c in ("faithfulness", "deletion_auc", "insertion_auc", "validity_note")}
    for mi in range(M):
        sel = g_method == mi
        for c, v in _validity(rng, n_present[sel], mi, cluster[g_image[sel]]).items():
            validity[c][sel] = v
    attributions = pd.DataFrame({
        "image_id": pd.Categorical(ids[g_image]), "head": pd.Categorical(np.asarray(head_names)[g_head]),
        "method": pd.Categorical(np.asarray(methods)[g_method]), "target": targets, "target_index": target_index,
        "logit": rng.normal(size=len(g_image)), "status": "ok",
        "delta": np.where(np.asarray(methods)[g_method] == "ig", rng.normal(0, 0.01, len(g_image)), np.nan),
        "total": totals, "scale": 1.0, "unassigned_n": unassigned[:, 0].astype(np.int64),
        "unassigned_sum": unassigned[:, 1], "unassigned_pos": unassigned[:, 2],
        "unassigned_neg": unassigned[:, 3], **validity})
    attributions["validity_note"] = attributions["validity_note"].astype(str)
    G = len(attributions)
    contributions = pd.DataFrame({
        "image_id": pd.Categorical(np.repeat(ids[g_image], K)),
        "head": pd.Categorical(np.repeat(np.asarray(head_names)[g_head], K)),
        "method": pd.Categorical(np.repeat(np.asarray(methods)[g_method], K)),
        "target": np.repeat(targets, K), "target_index": np.repeat(target_index, K),
        "region": pd.Categorical(np.tile(np.asarray(vocabulary, dtype=object), G)),
        "region_index": np.tile(np.arange(K), G),
        "n_pixels": stats[0].ravel().astype(np.int64),
        "sum": stats[1].ravel(), "pos_sum": stats[2].ravel(), "neg_sum": stats[3].ravel(),
    })
    cstore.add_default_scores(contributions, K)
    manifest = cstore.make_manifest(
        model={"name": "synthetic", "key": "5e7a000000000000", "input_size": SIZE},
        heads=heads,
        methods={m: {"params": {}, "key": method_keys[m], "notes": "synthetic", "level": "pixel"} for m in methods},
        regions={"name": "synthetic", "params": {}, "vocabulary": list(vocabulary), "key": rkey},
        settings={},
        extra={"synthetic": True, "targets": "predicted class per head", "batch_size": 8, "packages": {}})
    cstore.publish(root, {"images": images, "attributions": attributions, "contributions": contributions},
                   manifest)
    return root
