"""Exporting a corpus's regions as Label Studio tasks with pre-annotations (brush masks).

``semcontrib export CORPUS --format label-studio -o tasks.json`` writes a JSON list of tasks in Label
Studio's import format (https://labelstud.io/guide/task_format)::

    [{"data": {"image": "<the image's path, or /data/local-files/?d=<path under --image-root>>",
               "semcontrib_image_id": "<corpus image id>"},
      "predictions": [{"model_version": "semcontrib <region source>",
                       "result": [{"id": "<image id>-<k>", "from_name": "label", "to_name": "image",
                                   "type": "brushlabels", "original_width": W, "original_height": H,
                                   "image_rotation": 0,
                                   "value": {"format": "rle", "rle": [...], "brushlabels": ["sky"]}},
                                  ...]}]},
     ...]

One brush result per region present in the image: its pixels at the original (upright) image size,
from the stored region map (model resolution, nearest-neighbour upsampled), in Label Studio's brush
RLE (:func:`semcontrib.segmentation.rle.mask_to_brush_rle`). Importing the file back with
``--regions annotations:tasks.json`` (the ``annotations`` source reads a task's ``predictions`` when
it has no ``annotations``) gives the same region maps at model resolution for images at least as large
as the model input. :func:`label_config` is the matching labeling configuration (written next to the
tasks as ``<name>.label_config.xml``), with every name of the vocabulary. Unassigned pixels carry no
result; names are text (Label Studio renders them as text).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

import numpy as np

from semcontrib.corpus import Corpus, write_bytes
from semcontrib.regions import nearest_resize
from semcontrib.segmentation.rle import mask_to_brush_rle

logger = logging.getLogger(__name__)

LOCAL_FILES = "/data/local-files/?d="


def label_config(vocabulary: list[str]) -> str:
    """A Label Studio labeling configuration (XML) with a brush label per region name.

    >>> print(label_config(["sky", "a&b"]))  # doctest: +NORMALIZE_WHITESPACE
    <View>
      <Image name="image" value="$image" zoom="true"/>
      <BrushLabels name="label" toName="image">
        <Label value="sky"/>
        <Label value="a&amp;b"/>
      </BrushLabels>
    </View>
    """
    labels = "\n".join(f"    <Label value={quoteattr(n)}/>" for n in vocabulary)
    return ('<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            f'  <BrushLabels name="label" toName="image">\n{labels}\n  </BrushLabels>\n</View>')


def image_reference(path: str, image_root: str | os.PathLike[str] | None) -> str:
    """What a task's ``data.image`` holds: the path as recorded, or (``image_root``) Label Studio's
    local-files URL of the path relative to that folder (``ValueError`` for a path outside it).

    >>> image_reference("/photos/cats/a.jpg", "/photos")
    '/data/local-files/?d=cats/a.jpg'
    """
    if image_root is None:
        return str(path)
    rel = os.path.relpath(os.path.abspath(path), os.path.abspath(image_root))
    if rel.startswith(os.pardir):
        raise ValueError(f"image {path} is not under --image-root {image_root}")
    return LOCAL_FILES + Path(rel).as_posix()


def region_results(labels: np.ndarray, vocabulary: list[str], size: tuple[int, int], prefix: str
                   ) -> list[dict[str, Any]]:
    """The brush results of one region map (int HxW at any resolution, -1 unassigned), at the original
    ``size`` = (H, W): one per region present."""
    H, W = size
    full = nearest_resize(np.asarray(labels), (H, W))
    out = []
    for k in np.unique(full):
        if k < 0:
            continue
        out.append({"id": f"{prefix}-{int(k)}", "from_name": "label", "to_name": "image", "type": "brushlabels",
                    "original_width": int(W), "original_height": int(H), "image_rotation": 0,
                    "value": {"format": "rle", "rle": mask_to_brush_rle(full == k),
                              "brushlabels": [vocabulary[int(k)]]}})
    return out


def export_label_studio(corpus: Corpus, output: str | Path, image_root: str | os.PathLike[str] | None = None
                        ) -> int:
    """Write the corpus's regions as Label Studio tasks (module docstring) to ``output`` (``.json``) and the
    labeling configuration to ``<stem>.label_config.xml`` beside it; return the number of tasks.

    Images without a stored region map (skipped, or their regions failed) get a task without
    predictions, so that they can be annotated from scratch.
    """
    output = Path(output)
    if output.suffix.lower() != ".json":
        raise ValueError(f"a Label Studio export must end in .json, got {output.name!r}")
    vocabulary = corpus.vocabulary
    source = str(corpus.manifest["regions"].get("name", "regions"))
    ok = corpus.images[corpus.images["status"] == "ok"]
    tasks = []
    for image_id, path, height, width in zip(ok["image_id"].astype(str), ok["path"].astype(str),
                                             ok["height"].tolist(), ok["width"].tolist()):
        task: dict[str, Any] = {"data": {"image": image_reference(path, image_root),
                                         "semcontrib_image_id": image_id}}
        rmap = corpus.region_map(image_id)
        if rmap is None:
            logger.warning("%s: no region map stored; its task has no pre-annotations", image_id)
        else:
            results = region_results(rmap.labels, vocabulary, (int(height), int(width)), image_id)
            task["predictions"] = [{"model_version": f"semcontrib {source}", "result": results}]
        tasks.append(task)
    write_bytes(output, json.dumps(tasks).encode())
    write_bytes(output.with_suffix(".label_config.xml"), label_config(vocabulary).encode())
    return len(tasks)
