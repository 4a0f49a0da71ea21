"""Label Studio, both ways: the one owner of its JSON formats in semcontrib.

* **Reading labels** (:func:`read_choices`, :func:`read_label_config`, :func:`with_labels`): the image
  labels the study's annotators write, a JSON export with one ``choices`` control per task, for
  ``semcontrib train IMAGES EXPORT.json`` and ``semcontrib analyze --labels EXPORT.json``.
* **Writing regions** (:func:`export_label_studio`): a corpus's regions as tasks with brush
  pre-annotations, for ``semcontrib export CORPUS --format label-studio``. Reading regions back
  (brush, polygon and rectangle results) is the ``annotations`` region source
  (:mod:`semcontrib.segmentation.annotations`), which also owns the image-name keys used here.

Labels
------
The study's annotators label each image in Label Studio with one single-choice control per task
(``<Choices name="nature" toName="image" choice="single">``). Its JSON export (*Export > JSON*) is a
list of tasks; each names its image in ``data.image`` (an upload such as
``/data/upload/3/1a2b3c4d-IMG_0042.jpg``) and holds ``annotations``, each with a ``result`` list in
which a choice reads ``{"type": "choices", "from_name": "nature", "value": {"choices": ["nature"]}}``.

:func:`read_choices` turns it into one row of labels per image. Rules:

* **Image.** ``data.image`` (else ``file_upload``, else the first string of ``data``); matched to
  image files by its base name, also without Label Studio's ``xxxxxxxx-`` upload prefix (the same
  keys as :mod:`semcontrib.segmentation.annotations`).
* **Task names.** A control's ``from_name`` is the task name. Only ``choices`` results count; other
  result types (boxes, text areas) are ignored.
* **Annotations.** Cancelled annotations (``was_cancelled``) are ignored. An annotation that picks
  several choices in one control counts as no answer for that control.
* **Agreement.** When several annotations answer a control, the majority choice wins; a tie between
  the most frequent choices rejects the task (``annotations disagree``).
* **Classes.** With ``classes`` (task -> allowed choices, from :func:`read_label_config` or a
  checkpoint), a choice outside them rejects the task. Without, every choice seen is a class.

Rejected tasks are returned as :class:`SkippedTask` records (task id, image, reason), never raised:
the run goes on. A malformed export (not a JSON list, a task that is not an object) raises a
one-line ``ValueError``.

Examples
--------
>>> tasks = [{"id": 1, "data": {"image": "/data/upload/1/0a1b2c3d-fox.jpg"},
...           "annotations": [{"result": [{"type": "choices", "from_name": "nature",
...                                        "value": {"choices": ["nature"]}}]}]},
...          {"id": 2, "data": {"image": "car.jpg"}, "annotations": []}]
>>> labels = parse_choices(tasks)
>>> labels.rows[0].labels, labels.rows[0].image
({'nature': 'nature'}, '0a1b2c3d-fox.jpg')
>>> labels.skipped[0].reason
'no annotation'

Regions
-------
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
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

import numpy as np

from semcontrib.regions import nearest_resize
from semcontrib.segmentation.annotations import image_name_keys, strip_upload_prefix
from semcontrib.segmentation.rle import mask_to_brush_rle

if TYPE_CHECKING:
    from semcontrib.corpus import Corpus  # the reader stays free of the corpus (and pandas, pyarrow)
    from semcontrib.pipeline import InputEntry

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------- labels (reading)

MAX_EXPORT_BYTES = 1 << 30  # a Label Studio export larger than 1 GiB is refused before it is read


@dataclass(frozen=True)
class SkippedTask:
    """A task left out, and why (``task_id`` and ``image`` as the export gives them)."""

    task_id: str
    image: str
    reason: str

    def __str__(self) -> str:
        return f"task {self.task_id} ({self.image}): {self.reason}"


@dataclass(frozen=True)
class ChoiceRow:
    """One image's labels: ``image`` is the base name as uploaded (upload prefix kept)."""

    task_id: str
    image: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class ChoiceLabels:
    """Labels read from a Label Studio export.

    Attributes
    ----------
    tasks : the task names (choices controls) in order: the classes' order when given, else first seen.
    classes : task -> class names (given, else the sorted choices seen).
    rows : one per kept task; a task the annotators left unanswered is missing from ``labels``.
    skipped : the tasks left out, with their reasons.
    """

    tasks: tuple[str, ...]
    classes: Mapping[str, tuple[str, ...]]
    rows: tuple[ChoiceRow, ...]
    skipped: tuple[SkippedTask, ...]


def _text(v: Any) -> str:
    r = v if isinstance(v, str) else json.dumps(v, default=str)
    return r if len(r) <= 60 else r[:57] + "..."


def _image_of(task: Mapping[str, Any]) -> str:
    """The base name of a task's image: of an upload path, a URL (its query left out), or a local file
    served as ``/data/local-files/?d=PATH``; percent-escapes decoded.

    >>> [_image_of({"data": {"image": v}}) for v in ("/data/upload/3/0a1b2c3d-fox.jpg",
    ...  "/data/local-files/?d=photos/my%20fox.jpg", "https://host/b/fox.jpg?X-Amz-Signature=1")]
    ['0a1b2c3d-fox.jpg', 'my fox.jpg', 'fox.jpg']
    """
    from urllib.parse import parse_qs, unquote, urlsplit

    data = task.get("data")
    data = data if isinstance(data, dict) else {}
    image = data.get("image") or task.get("file_upload") or next((v for v in data.values() if isinstance(v, str)), "")
    if not isinstance(image, str):
        return ""
    image = image.replace("\\", "/")
    if "?" in image:
        parts = urlsplit(image)
        image = parse_qs(parts.query).get("d", [parts.path])[0]  # parse_qs decodes the query
    else:
        image = unquote(image)
    return os.path.basename(image.rstrip("/"))


def _answers(task: Mapping[str, Any]) -> tuple[dict[str, list[str]], int]:
    """control -> the choice of each annotation that answered it; and the number of live annotations."""
    anns = task.get("annotations")
    if anns is None:
        anns = task.get("completions")
    answers: dict[str, list[str]] = {}
    live = 0
    for ann in anns if isinstance(anns, list) else []:
        if not isinstance(ann, dict) or ann.get("was_cancelled") or not isinstance(ann.get("result"), list):
            continue
        picked: dict[str, list[str]] = {}
        for res in ann["result"]:
            if not isinstance(res, dict) or res.get("type") != "choices" or not isinstance(res.get("value"), dict):
                continue
            name, choices = res.get("from_name"), res["value"].get("choices")
            if not isinstance(name, str) or not name or not isinstance(choices, list):
                continue
            picked.setdefault(name, []).extend(str(c) for c in choices)
        if picked:
            live += 1
        for name, choices in picked.items():
            if len(set(choices)) == 1:  # several choices in one single-choice control: no answer
                answers.setdefault(name, []).append(choices[0])
    return answers, live


def _resolve(choices: Sequence[str]) -> str | None:
    """The majority choice, or None on a tie between the most frequent."""
    counts = Counter(choices).most_common()
    if len(counts) > 1 and counts[0][1] == counts[1][1]:
        return None
    return counts[0][0]


def parse_choices(tasks: Any, classes: Mapping[str, Sequence[str]] | None = None,
                  source: str = "Label Studio export") -> ChoiceLabels:
    """Labels from a parsed Label Studio export (see the module docs for the rules).

    Parameters
    ----------
    tasks : the export's JSON value, a list of task objects.
    classes : task name -> allowed choices (their order is the class order); None: the choices seen.
        With ``classes`` only those controls are read.
    source : how messages name the export.

    Returns
    -------
    ChoiceLabels
    """
    if not isinstance(tasks, list):
        raise ValueError(f"{source}: a Label Studio export must be a JSON list of tasks, got {type(tasks).__name__}")
    allowed = {t: tuple(str(c) for c in cs) for t, cs in classes.items()} if classes is not None else None
    rows: list[ChoiceRow] = []
    skipped: list[SkippedTask] = []
    seen_tasks: dict[str, None] = dict.fromkeys(allowed or ())
    first_task_of: dict[str, str] = {}
    for k, task in enumerate(tasks):
        if not isinstance(task, dict):
            raise ValueError(f"{source}: item {k} is {_text(task)}, not a task object")
        tid = _text(task.get("id", f"#{k}"))
        image = _image_of(task)
        if not image:
            skipped.append(SkippedTask(tid, "?", "names no image (data.image)"))
            continue
        answers, live = _answers(task)
        if allowed is not None:
            answers = {t: c for t, c in answers.items() if t in allowed}
        if not answers:
            skipped.append(SkippedTask(tid, image, "no annotation" if not live else "no usable choice"))
            continue
        labels, problem = _labels_of(answers, allowed)
        if problem:
            skipped.append(SkippedTask(tid, image, problem))
            continue
        key = strip_upload_prefix(image)
        if key in first_task_of:
            skipped.append(SkippedTask(tid, image, f"image already labelled by task {first_task_of[key]}"))
            continue
        first_task_of[key] = tid
        seen_tasks.update(dict.fromkeys(labels))
        rows.append(ChoiceRow(tid, image, labels))
    names = tuple(seen_tasks)
    found = {t: tuple(allowed[t]) if allowed is not None else
             tuple(sorted({r.labels[t] for r in rows if t in r.labels})) for t in names}
    for s in skipped:
        logger.warning("%s: skipped %s", source, s)
    return ChoiceLabels(names, found, tuple(rows), tuple(skipped))


def _labels_of(answers: Mapping[str, Sequence[str]], allowed: Mapping[str, tuple[str, ...]] | None
               ) -> tuple[dict[str, str], str]:
    """One task's label per control from its annotations' choices, or the problem that skips the task."""
    labels: dict[str, str] = {}
    for t, choices in answers.items():
        choice = _resolve(choices)
        if choice is None:
            tally = ", ".join(f"{c} {n}" for c, n in Counter(choices).most_common())
            return labels, f"annotations disagree on {t} ({tally})"
        if allowed is not None and choice not in allowed[t]:
            return labels, f"choice {_text(choice)} is not a class of {t} ({', '.join(allowed[t])})"
        labels[t] = choice
    return labels, ""


def read_choices(path: str | Path, classes: Mapping[str, Sequence[str]] | None = None) -> ChoiceLabels:
    """:func:`parse_choices` of a Label Studio JSON export file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Label Studio export not found: {path}")
    if path.stat().st_size > MAX_EXPORT_BYTES:
        raise ValueError(f"{path}: larger than {MAX_EXPORT_BYTES >> 30} GiB; split the export")
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON file ({str(exc).splitlines()[0]})") from None
    return parse_choices(data, classes, source=path.name)


def is_label_studio_export(path: str | Path) -> bool:
    """Whether a labels file is read as a Label Studio export (a ``.json`` file) rather than a CSV."""
    return Path(path).suffix.lower() == ".json"


def read_label_config(path: str | Path) -> dict[str, tuple[str, ...]]:
    """task -> class names from a Label Studio labelling config (the project's XML).

    Every ``<Choices name="TASK">`` element gives a task; its ``<Choice value="CLASS"/>`` children
    (``alias`` when set, as Label Studio exports it) give the classes in order.
    """
    import xml.etree.ElementTree as ET

    path = Path(path)
    text = path.read_text(encoding="utf-8-sig")
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ValueError(f"{path}: a labelling config with a DOCTYPE or entities is not read")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not a Label Studio labelling config ({exc})") from None
    out: dict[str, tuple[str, ...]] = {}
    for el in root.iter("Choices"):
        name = el.get("name")
        values = tuple(c.get("alias") or c.get("value") or "" for c in el.iter("Choice"))
        if not name or not values or "" in values:
            raise ValueError(f"{path}: a <Choices> element needs a name and <Choice value=...> children")
        if len(set(values)) != len(values):
            raise ValueError(f"{path}: <Choices name={name!r}> names a class twice")
        out[name] = values
    if not out:
        raise ValueError(f"{path}: no <Choices name=...> control; the export's tasks are its Choices controls")
    return out


def with_labels(entries: Iterable[InputEntry], labels: ChoiceLabels) -> tuple[list[InputEntry], list[str]]:
    """Analysis inputs (objects with ``path`` and ``labels``, e.g. ``InputEntry``) with the export's labels.

    Each input is matched to a row by file name (``image_name_keys`` of both sides: base name and stem,
    also without the upload prefix); its ``labels`` gain one entry per task (``""`` where the row does
    not answer it), which the corpus stores as ``label_<task>`` columns. Returns the inputs and the
    rows that matched no input, as ``task ID (IMAGE)`` texts.
    """
    by_key: dict[str, ChoiceRow] = {}
    for labelled in labels.rows:
        for k in image_name_keys(labelled.image):
            by_key.setdefault(k, labelled)
    used: set[str] = set()
    out: list[InputEntry] = []
    for e in entries:
        name = os.path.basename(str(e.path))
        row = next((by_key[k] for k in image_name_keys(name) if k in by_key), None)
        if row is None:
            out.append(e)
            continue
        used.add(row.task_id)
        merged = {**dict(e.labels), **{t: row.labels.get(t, "") for t in labels.tasks}}
        out.append(replace(e, labels=merged))
    unmatched = [f"task {r.task_id} ({r.image})" for r in labels.rows if r.task_id not in used]
    return out, unmatched


# --------------------------------------------------------------------------- regions (writing)
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
    from semcontrib.corpus import write_bytes

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
