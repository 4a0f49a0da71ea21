"""Export a corpus as a ViRelAy project (https://github.com/virelay/virelay), one head and method.

ViRelAy reads a project YAML that names a label map, an input (dataset) HDF5 file, attribution
HDF5 files and analysis HDF5 files. What this module writes follows, in the public repository
``virelay/virelay`` (commit 4e87821):

* ``docs/source/contributors-guide/project-file-format.rst`` and ``docs/examples/make_project.py``
  for the YAML (``project: name, model, label_map, dataset{name, type: hdf5, path, input_width,
  input_height, up_sampling_method, down_sampling_method}, attributions{attribution_method,
  attribution_strategy, sources}, analyses[{analysis_method, sources}]``; paths relative to the
  YAML) and the label map (a JSON list of ``{index, word_net_id, name}``);
* ``docs/source/contributors-guide/database-specification.rst`` and
  ``docs/examples/hdf5_structure.py`` (``make_dataset_example``: one HDF5 dataset per key when
  every sample has the same shape) for the three databases, with file names
  ``<model>.input.h5``, ``<model>-<attribution>.attribution.h5`` and
  ``<model>-<attribution>-<topic>.analysis.h5`` (underscores for spaces, dashes between keys);
* ``source/backend/virelay/model.py`` (the reader: ``Project``, ``Hdf5Dataset``,
  ``AttributionDatabase``, ``AnalysisDatabase``) and ``docs/examples/meta_analysis.py`` (CoRelAy's
  writer) where the specification and the reader differ: the reader looks up clusterings under
  ``<category>/cluster`` (the specification says ``clustering``) and reads every embedding and
  clustering as one HDF5 *dataset* (the specification's ``root``/``name`` sub-groups are not read),
  so this module writes what the reader reads.

Layout written (N images with an ``ok`` status, M <= N of them with a finite map for the chosen head
and method, S the model's input side, C the head's classes, K the region vocabulary)::

    DIR/project.yaml
    DIR/label-map.json                       the head's classes, index = logit order
    DIR/<model>.input.h5
        data      float32 N x 3 x S x S      the display photograph squashed to S x S, values in [0, 1]
        label     uint16 N                   ground truth from a ``label_<head>`` column, else the prediction
        image_id  str N                      semcontrib's image ids (extra; ViRelAy ignores it)
    DIR/<model>-<method>_<head>.attribution.h5
        index       uint32 M                 sample indices into the input file
        attribution float32 M x 3 x S x S    the stored map / 3 in each channel: semcontrib keeps the sum
                                             over colours, ViRelAy sums channels back (it renders only
                                             maps with more than one channel)
        prediction  float32 M x C            the head's logits
        label       uint16 M                 the attributed class (the target) per map
    DIR/<model>-<method>_<head>-contributions.analysis.h5
        all/name           str               verbose name of the analysis
        all/index          uint32 M          sample indices (the same values as the attribution index)
        all/embedding/tsne float32 M x 2     openTSNE of the contribution vectors (``pca`` below 8 images)
        all/cluster/kmeans-KK  uint32 M      k-means clusters of the contribution vectors, attrs ``k``

Images are float32 in [0, 1] as the specification asks. ViRelAy's viewer guesses the value range of
float images from their minimum and maximum (``virelay.model.Sample``), so a very dark photograph
(minimum + maximum below 0.5) is shown with the wrong range there; the data themselves are exact.

The embedding input is the weighted unit vector of each image's contributions
(:func:`semcontrib.contributions.weighted_unit_vectors` with equal weights), so Euclidean distances
are the CatViz eq. 6 weighted cosine; a corpus stores no embedding, so one is computed here.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.contributions import BASES, NORMALISATIONS, weighted_unit_vectors
from semcontrib.corpus import Corpus, write_bytes

logger = logging.getLogger(__name__)

PROJECT_FILE = "project.yaml"
LABEL_MAP_FILE = "label-map.json"
CATEGORY = "all"
MIN_TSNE_IMAGES = 8  # below this, t-SNE's perplexity has no room: a PCA projection is written instead


@dataclass(frozen=True)
class ViRelAySettings:
    """How the analysis database is computed.

    Attributes
    ----------
    normalisation, basis : contribution vectors embedded and clustered (``Corpus.contribution_table``).
    n_clusters : k of every k-means clustering written (values >= the number of images are skipped).
    seed : seed of t-SNE and k-means.
    """

    normalisation: str = "signed_l1"
    basis: str = "mean"
    n_clusters: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.normalisation not in NORMALISATIONS:
            raise ValueError(f"normalisation must be one of {NORMALISATIONS}, got {self.normalisation!r}")
        if self.basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {self.basis!r}")
        if not self.n_clusters or any(not isinstance(k, int) or k < 2 for k in self.n_clusters):
            raise ValueError(f"n_clusters must be integers >= 2, got {self.n_clusters!r}")


@dataclass(frozen=True)
class ProjectFiles:
    """The files of one exported project, relative to its folder."""

    project: str
    label_map: str
    input: str
    attribution: str
    analysis: str


def export_virelay(corpus: Corpus, out_dir: str | Path, head: str | None = None, method: str | None = None,
                   settings: ViRelAySettings | None = None) -> Path:
    """Write a ViRelAy project for one head and method of ``corpus``; return the project YAML's path.

    Parameters
    ----------
    corpus : an open corpus.
    out_dir : folder to write into (created; existing files of the same names are replaced).
    head, method : which attributions to export (default: the corpus's first head and method).
    settings : embedding and clustering options (:class:`ViRelAySettings`).

    Raises
    ------
    ValueError : unknown head or method, or no image with an ``ok`` status.
    """
    settings = settings or ViRelAySettings()
    head = head or corpus.heads[0]
    method = method or corpus.methods[0]
    if head not in corpus.heads:
        raise ValueError(f"unknown head {head!r}; corpus has {corpus.heads}")
    if method not in corpus.methods:
        raise ValueError(f"unknown method {method!r}; corpus has {corpus.methods}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = corpus.images[corpus.images["status"] == "ok"].reset_index(drop=True)
    if images.empty:
        raise ValueError(f"{corpus.root}: no analysed image to export")
    model = _slug(str(corpus.manifest["model"].get("name", "model")))
    files = ProjectFiles(PROJECT_FILE, LABEL_MAP_FILE, f"{model}.input.h5",
                         f"{model}-{_slug(method)}_{_slug(head)}.attribution.h5",
                         f"{model}-{_slug(method)}_{_slug(head)}-contributions.analysis.h5")
    classes = corpus.classes(head)
    size = int(corpus.manifest["model"]["input_size"])
    write_bytes(out / files.label_map, json.dumps(
        [{"index": i, "word_net_id": "", "name": c} for i, c in enumerate(classes)], indent=1).encode())
    labels, label_source = _dataset_labels(images, head, classes)
    _write_input(corpus, images, labels, size, out / files.input)
    index = _write_attribution(corpus, images["image_id"].tolist(), (head, method), size, out / files.attribution)
    _write_analysis(corpus, images["image_id"].tolist(), index, (head, method), settings, out / files.analysis)
    project = _project_yaml(corpus, files, (head, method), size, label_source)
    import yaml

    write_bytes(out / files.project, yaml.safe_dump(project, sort_keys=False).encode())
    logger.info("ViRelAy project for %s/%s: %d images, %d attributions -> %s", head, method, len(images),
                len(index), out / files.project)
    return out / files.project


# --------------------------------------------------------------------------- pieces


def _slug(text: str) -> str:
    """File-name key: spaces become underscores, dashes (ViRelAy's key separator) and others too."""
    return re.sub(r"[^A-Za-z0-9_.]+", "_", text.strip()).strip("_") or "x"


def _dataset_labels(images: Any, head: str, classes: Sequence[str]) -> tuple[np.ndarray, str]:
    """Ground-truth class index per image from ``label_<head>`` when every value names a class, else
    the predicted class (``pred_<head>``); uint16 N and which one was used."""
    col = f"label_{head}"
    if col in images and images[col].isin(classes).all():
        values, source = images[col], f"ground truth ({col})"
    else:
        values, source = images[f"pred_{head}"], f"predicted class (pred_{head})"
    lookup = {c: i for i, c in enumerate(classes)}
    return np.array([lookup[v] for v in values], dtype=np.uint16), source


def _atomic_h5(path: Path) -> tuple[Any, Path]:
    import h5py

    tmp = path.with_name(f".{path.name}.tmp")
    return h5py.File(tmp, "w"), tmp


def _write_input(corpus: Corpus, images: Any, labels: np.ndarray, size: int, path: Path) -> None:
    import h5py
    from PIL import Image

    from semcontrib.imageio import resize_rgb

    f, tmp = _atomic_h5(path)
    with f:
        n = len(images)
        data = f.create_dataset("data", (n, 3, size, size), dtype="float32", chunks=(1, 3, size, size),
                                compression="gzip", compression_opts=4)
        for i, image_id in enumerate(images["image_id"]):
            jpeg = corpus.display_jpeg(image_id)
            if jpeg is None:
                raise ValueError(f"{corpus.root}: display photograph of {image_id} is missing")
            with Image.open(io.BytesIO(jpeg)) as img:
                rgb = np.asarray(img.convert("RGB"))
            data[i] = resize_rgb(rgb, size).transpose(2, 0, 1).astype(np.float32) / 255.0
        f["label"] = labels
        f.create_dataset("image_id", data=np.array(images["image_id"].tolist(), dtype=object),
                         dtype=h5py.string_dtype())
    os.replace(tmp, path)


def _logits(corpus: Corpus, image_id: str, head: str) -> np.ndarray:
    """The head's logits (float32 C) from the corpus's prediction work file."""
    logits = corpus.logits(image_id, head)
    if logits is None:
        raise ValueError(f"{corpus.root}: no stored predictions for image {image_id}; run `semcontrib analyze` again")
    return logits


def _write_attribution(corpus: Corpus, image_ids: list[str], view: tuple[str, str], size: int,
                       path: Path) -> np.ndarray:
    """Write the attribution database; return its index (uint32 M, sample indices with a map)."""
    head, method = view
    rows = corpus.attributions
    rows = rows[(rows["head"] == head) & (rows["method"] == method)].set_index("image_id")
    n_classes = len(corpus.classes(head))
    target_of = {str(i): int(t) for i, t in zip(rows.index, rows["target_index"])}
    f, tmp = _atomic_h5(path)
    kept: list[int] = []
    with f:
        attr = f.create_dataset("attribution", (0, 3, size, size), maxshape=(None, 3, size, size), dtype="float32",
                                chunks=(1, 3, size, size), compression="gzip", compression_opts=4)
        pred = f.create_dataset("prediction", (0, n_classes), maxshape=(None, n_classes), dtype="float32")
        targets: list[int] = []
        for i, image_id in enumerate(image_ids):
            amap = corpus.attribution_map(image_id, head, method) if image_id in target_of else None
            if amap is None:
                logger.warning("no finite %s map for %s/%s: left out of the ViRelAy export", method, image_id, head)
                continue
            if amap.shape != (size, size):
                raise ValueError(f"map of {image_id} is {amap.shape}, expected {(size, size)}")
            k = len(kept)
            attr.resize(k + 1, axis=0)
            pred.resize(k + 1, axis=0)
            attr[k] = np.broadcast_to((amap / 3.0).astype(np.float32), (3, size, size))
            pred[k] = _logits(corpus, image_id, head)
            targets.append(target_of[image_id])
            kept.append(i)
        f["index"] = np.array(kept, dtype=np.uint32)
        f["label"] = np.array(targets, dtype=np.uint16)
    os.replace(tmp, path)
    return np.array(kept, dtype=np.uint32)


def _write_analysis(corpus: Corpus, image_ids: list[str], index: np.ndarray, view: tuple[str, str],
                    settings: ViRelAySettings, path: Path) -> None:
    head, method = view
    ids = [image_ids[i] for i in index]
    wide = corpus.contribution_table(head, method, normalisation=settings.normalisation, basis=settings.basis,
                                     wide=True, image_ids=ids).set_index("image_id")
    region_cols = ([f"{r}{s}" for s in "+-" for r in corpus.vocabulary] if settings.normalisation == "split"
                   else corpus.vocabulary)
    vectors = wide.loc[ids, region_cols].to_numpy(dtype=np.float64)
    unit = weighted_unit_vectors(vectors)
    name, embedding = embed(unit, settings.seed)
    f, tmp = _atomic_h5(path)
    with f:
        group = f.require_group(CATEGORY)
        group["name"] = f"semcontrib contributions of {head} / {method} ({settings.normalisation}, {settings.basis})"
        group["index"] = index.astype(np.uint32)
        emb = group.require_group("embedding")
        emb[name] = embedding.astype(np.float32)
        emb[name].attrs["input"] = f"weighted unit contribution vectors over {len(region_cols)} regions"
        emb[name].attrs["regions"] = [str(c) for c in region_cols]
        clusters = group.require_group("cluster")
        for k in settings.n_clusters:
            if k >= len(ids):
                continue
            labels = cluster(unit, k, settings.seed)
            clusters[f"kmeans-{k:02d}"] = labels.astype(np.uint32)
            clusters[f"kmeans-{k:02d}"].attrs["k"] = k
            clusters[f"kmeans-{k:02d}"].attrs["embedding"] = "contribution vectors"
    os.replace(tmp, path)


def embed(unit: np.ndarray, seed: int = 0) -> tuple[str, np.ndarray]:
    """2-D embedding of unit vectors (float64 M x K): ``("tsne", M x 2)`` with openTSNE from 8 rows on,
    else ``("pca", M x 2)`` (the first two principal axes, zero where there are fewer)."""
    M = unit.shape[0]
    if M >= MIN_TSNE_IMAGES:
        from openTSNE import TSNE

        perplexity = float(min(30.0, (M - 1) / 3.0))
        Y = TSNE(n_components=2, perplexity=perplexity, random_state=seed, n_jobs=1, verbose=False).fit(unit)
        return "tsne", np.asarray(Y, dtype=np.float64)
    centred = unit - unit.mean(axis=0, keepdims=True)
    out = np.zeros((M, 2))
    if M > 1:
        u, s, _ = np.linalg.svd(centred, full_matrices=False)
        r = min(2, len(s))
        out[:, :r] = u[:, :r] * s[:r]
    return "pca", out


def cluster(unit: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """k-means labels (int64 M) of unit vectors float64 M x K."""
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(unit).astype(np.int64)


def _project_yaml(corpus: Corpus, files: ProjectFiles, view: tuple[str, str], size: int,
                  label_source: str) -> dict[str, Any]:
    head, method = view
    model = corpus.manifest["model"]
    params = corpus.manifest["methods"][method].get("params", {})
    named = corpus.manifest.get("targets")
    # the YAML's values are true_label / predicted_label; a fixed class is an <integer> in the database spec
    strategy: str | int = "predicted_label"
    if isinstance(named, dict) and head in named:
        strategy = corpus.classes(head).index(named[head])
    return {"project": {
        "name": f"semcontrib {corpus.root.name}: {head} / {method}",
        "model": str(model.get("name", "model")),
        "label_map": files.label_map,
        "dataset": {
            "name": f"{corpus.root.name} (labels: {label_source})",
            "type": "hdf5",
            "path": files.input,
            "input_width": size,
            "input_height": size,
            "up_sampling_method": "none",
            "down_sampling_method": "none",
        },
        "attributions": {
            "attribution_method": f"{method} {json.dumps(params, sort_keys=True)}",
            "attribution_strategy": strategy,
            "sources": [files.attribution],
        },
        "analyses": [{
            "analysis_method": "semcontrib region contributions",
            "sources": [files.analysis],
        }],
    }}
