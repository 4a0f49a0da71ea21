"""A synthetic corpus written with the corpus writers: for ``semcontrib demo --synthetic N``, tests,
screenshots and the benchmark.

It has the layout and tables that ``semcontrib.pipeline`` writes (manifest, the images table with its
``chunk`` column, attribution parts with a validity record and contribution parts per head and method;
display JPEGs, attribution and region maps of the first images in chunk files of ``CHUNK_SIZE`` images),
from seeded random data and without a model, and its manifest says ``"synthetic": true`` so the dashboard
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
from semcontrib.engine.rows import attribution_frame, contribution_frame

SIZE = 224
CHUNK_SIZE = 128  # images per chunk, the pipeline's default
SOURCE = "synthetic"  # the region source's name
MODEL_KEY = "5e7a000000000000"  # store keys are 16 hex digits
REGIONS_KEY = "5e7a000000000001"
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
                            "original_mode": "RGB", "chunk": np.arange(n, dtype=np.int64) // CHUNK_SIZE,
                            "label_scene": np.char.add("scene", cluster.astype(str))}
    for h, classes in spec.heads.items():
        data[f"pred_{h}"] = np.asarray(classes, dtype=object)[(cluster + np.arange(n) % 2) % len(classes)]
        data[f"prob_{h}"] = rng.uniform(0.4, 1.0, n)
    frame = pd.DataFrame(data)
    skipped = pd.DataFrame({"image_id": [f"broken{j}-0000000000" for j in range(spec.n_skipped)],
                            "path": [f"/synthetic/broken{j}.jpg" for j in range(spec.n_skipped)], "sha256": "",
                            "width": 0, "height": 0, "status": "skipped",
                            "reason": ["not an image" if j % 2 == 0 else "truncated file"
                                       for j in range(spec.n_skipped)], "original_mode": "", "chunk": -1,
                            "label_scene": ""})
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
    lerf = np.clip(rng.beta(5, 2, G) - 0.05 * method_index, 0, 1)
    # between the two orders, nearer one of them depending on the method (their gains over random differ)
    share = (0.6, 0.4, 0.3)[method_index % 3]
    random = np.clip(deletion + share * (lerf - deletion) + rng.normal(0, 0.03, G), 0, 1)
    return {"faithfulness": faith, "deletion_auc": deletion, "insertion_auc": insertion, "lerf_auc": lerf,
            "random_auc": random, "validity_note": np.where(few, _FEW_REGIONS, "")}


def _categorical(codes: np.ndarray, categories: Any) -> pd.Categorical[Any]:
    """``codes`` into the unique ``categories`` as a pandas Categorical (no sorting or hashing of the values)."""
    return pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(categories)))


def _method_keys(methods: tuple[str, ...]) -> dict[str, str]:
    return {m: f"5e7a00000000{i + 16:04x}" for i, m in enumerate(methods)}


@dataclass(frozen=True)
class _Groups:
    """The per-group numbers of the tables, filled in place; group ``g = (image * M + method) * H + head``
    (image-major, as the pipeline computes them).

    stats : float64 4 x G x K (n_pixels, sum, pos_sum, neg_sum); totals : float64 G;
    unassigned : float64 G x 4; scales : float64 G (the display encoding's scale, NaN without a map).
    """

    stats: np.ndarray
    totals: np.ndarray
    unassigned: np.ndarray
    scales: np.ndarray

    @classmethod
    def zeros(cls, G: int, K: int) -> _Groups:
        return cls(np.zeros((4, G, K)), np.zeros(G), np.zeros((G, 4)), np.full(G, np.nan))


def _n_maps(spec: SyntheticSpec) -> int:
    """How many images get maps: the first ``spec.n_maps`` (all when None)."""
    return spec.n_images if spec.n_maps is None else min(spec.n_images, spec.n_maps)


def _write_maps(root: Path, spec: SyntheticSpec, images: pd.DataFrame, cluster: np.ndarray,
                rng: np.random.Generator, out: _Groups) -> None:
    """Display photos, region maps and attribution maps of the first :func:`_n_maps` images, a chunk at a time
    with the corpus's chunk writers; their statistics (from the full-precision maps, as the pipeline
    computes them) go into ``out``."""
    n_maps = _n_maps(spec)
    heads, methods, K = dict(spec.heads), tuple(spec.methods), len(spec.vocabulary)
    M, H = len(methods), len(heads)
    keys = _method_keys(methods)
    ids = images["image_id"].to_numpy(dtype=object)[:spec.n_images]
    work = cstore.WorkStore(root, SIZE)
    for chunk in range(-(-n_maps // CHUNK_SIZE)):
        members = range(chunk * CHUNK_SIZE, min(spec.n_images, (chunk + 1) * CHUNK_SIZE))
        labels = {k: _region_labels(rng, K) for k in members if k < n_maps}
        work.write_images(chunk, {str(ids[k]): cstore.ImageRecord(160, 120, "RGB") for k in members},
                          {str(ids[k]): _photo(lab, K) for k, lab in labels.items()})
        regions = work.write_regions(SOURCE, REGIONS_KEY, chunk, {str(ids[k]): cstore.RegionWork(lab.astype(np.int16))
                                                                  for k, lab in labels.items()})
        for mi, m in enumerate(methods):
            works: dict[str, dict[str, cstore.HeadAttribution]] = {}
            for k, lab in labels.items():
                works[str(ids[k])] = {}
                for hi, (h, classes) in enumerate(heads.items()):
                    g = (k * M + mi) * H + hi
                    ramp = (np.arange(SIZE) / SIZE)[None, :] * (hi + 1)
                    amap = _attribution(rng, lab, K) + cluster[k] * ramp
                    s = aggregate(amap, lab, K)
                    works[str(ids[k])][h] = cstore.HeadAttribution(classes.index(str(images.at[k, f"pred_{h}"])), "ok",
                                                                   amap, stats=s)
                    out.stats[:, g] = [s.n_pixels, s.sum, s.pos_sum, s.neg_sum]
                    out.totals[g], out.unassigned[g] = s.total, s.unassigned
                    out.scales[g] = float(np.float32(np.abs(amap).max()))  # encode_map's scale
            work.write_attribution(m, keys[m], chunk, cstore.ChunkAttribution(works, regions.digest), K)


def _write_parts(root: Path, spec: SyntheticSpec, images: pd.DataFrame, cluster: np.ndarray, groups: _Groups,
                 rng: np.random.Generator) -> list[cstore.Part]:
    """The attribution and contribution parts, one per (table, head, method), each holding every chunk."""
    heads, methods, vocabulary = dict(spec.heads), tuple(spec.methods), tuple(spec.vocabulary)
    N, K, M, H = spec.n_images, len(vocabulary), len(methods), len(heads)
    keys = _method_keys(methods)
    chunks = tuple(range(-(-N // CHUNK_SIZE)))
    ids = images["image_id"].to_numpy(dtype=object)[:N]
    image_id = _categorical(np.arange(N), ids)
    target_index = {}
    for h, classes in heads.items():
        lookup = {c: k for k, c in enumerate(classes)}
        target_index[h] = pd.Series(images[f"pred_{h}"].to_numpy(dtype=object)[:N]).map(lookup).to_numpy(np.int64)
    n_present = (groups.stats[0] > 0).sum(axis=1)
    logit = rng.normal(size=N * M * H)
    parts_a: list[cstore.Part] = []
    parts_c: list[cstore.Part] = []
    for mi, m in enumerate(methods):
        by_method = np.arange(N * H) // H * (M * H) + mi * H + np.arange(N * H) % H  # groups of m, image-major
        validity = _validity(rng, n_present[by_method], mi, np.repeat(cluster, H))
        delta = rng.normal(0, 0.01, N * H) if m == "ig" else np.full(N * H, np.nan)
        for hi, (h, classes) in enumerate(heads.items()):
            g = np.arange(N) * (M * H) + mi * H + hi
            target = _categorical(target_index[h], list(classes))
            attributions = attribution_frame({
                "image_id": image_id, "target": target, "target_index": target_index[h], "logit": logit[g],
                "status": "ok", "delta": delta[hi::H], "total": groups.totals[g], "scale": groups.scales[g],
                "unassigned_n": groups.unassigned[g, 0], "unassigned_sum": groups.unassigned[g, 1],
                "unassigned_pos": groups.unassigned[g, 2], "unassigned_neg": groups.unassigned[g, 3],
                "lrp_ratio": np.nan,  # the synthetic logits are not the maps' model's
                **{c: v[hi::H] for c, v in validity.items()}})
            parts_a.append(cstore.write_part(root, "attributions", h, m, attributions, key=keys[m], chunks=chunks))
            contributions = contribution_frame(image_id, target, target_index[h], vocabulary,
                                               [groups.stats[j, g] for j in range(4)], categorical_regions=True)
            cstore.add_default_scores(contributions, K)
            parts_c.append(cstore.write_part(root, "contributions", h, m, contributions, key=keys[m], chunks=chunks))
    return parts_a + parts_c


def write_synthetic_corpus(root: str | Path, spec: SyntheticSpec | None = None, **kwargs: Any) -> Path:
    """Write a synthetic corpus into ``root`` and return ``root``.

    ``spec`` (or its fields as keyword arguments) says what to write; see :class:`SyntheticSpec`.
    """
    spec = spec or SyntheticSpec(**kwargs)
    root = Path(root)
    heads, methods, vocabulary = dict(spec.heads), tuple(spec.methods), tuple(spec.vocabulary)
    N, K, M, H = spec.n_images, len(vocabulary), len(methods), len(heads)
    n_maps = _n_maps(spec)
    rng = np.random.default_rng(spec.seed)
    ids = np.array([f"img{i:07d}-{i * 2654435761 % 16 ** 10:010x}" for i in range(N)], dtype=object)
    cluster = rng.integers(0, 3, N)
    images = _images_table(spec, ids, cluster, rng)
    groups = _Groups.zeros(N * M * H, K)
    _write_maps(root, spec, images, cluster, rng, groups)
    if n_maps < N:
        rest = np.arange(n_maps * M * H, N * M * H)
        bulk = _bulk_stats(rng, cluster[rest // (M * H)], K)
        groups.stats[:, rest] = bulk
        groups.totals[rest] = bulk[1].sum(axis=1)
    parts = _write_parts(root, spec, images, cluster, groups, rng)
    keys = _method_keys(methods)
    manifest = cstore.make_manifest(
        model={"name": "synthetic", "key": MODEL_KEY, "input_size": SIZE},
        heads=heads,
        methods={m: {"params": {}, "key": keys[m], "notes": "synthetic", "level": "pixel"} for m in methods},
        regions={"name": SOURCE, "params": {}, "vocabulary": list(vocabulary), "key": REGIONS_KEY},
        settings={},
        extra={"synthetic": True, "targets": "predicted class per head", "batch_size": 8, "chunk_size": CHUNK_SIZE,
               "packages": {}})
    cstore.publish(root, images, parts, manifest)
    return root
