"""The manifest: what a corpus records of its model, heads, methods, regions and settings, and its checks."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from semcontrib.store.parts import Part
from semcontrib.store.schema import CORPUS_FORMAT, MANIFEST, MAX_MANIFEST_BYTES, CorpusError, _check_key, _check_name

# --------------------------------------------------------------------------- manifest


def make_manifest(*, model: Mapping[str, Any], heads: Mapping[str, list[str]], methods: Mapping[str, Any],
                  regions: Mapping[str, Any], settings: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest's fields (their one definition). ``methods``: name -> {params, key, notes, level}."""
    return {
        "format": CORPUS_FORMAT,
        "model": dict(model),
        "heads": {h: list(c) for h, c in heads.items()},
        "head_order": list(heads),
        "method_order": list(methods),
        "methods": {m: dict(v) for m, v in methods.items()},
        "regions": {**dict(regions), "unassigned_label": -1},
        "settings": dict(settings),
        "normalisation": {"stored": "mean basis: score_signed_l1, score_paper, score_pos, score_neg",
                          "map_encoding": "display only: int8 round(127 * map / scale), scale = max|map| "
                                          "(float32); statistics from the full-precision map; "
                                          "external heatmaps float64 as given"},
        **dict(extra),
    }


def validate_manifest(manifest: Any, where: Path) -> dict[str, Any]:
    """Check the fields a reader relies on (types, names that become path parts); ``CorpusError`` if not."""
    def bad(why: str) -> CorpusError:
        return CorpusError(f"{where}: malformed manifest: {why}")

    if not isinstance(manifest, dict):
        raise bad("not an object")
    if manifest.get("format") != CORPUS_FORMAT:
        hint = "; it was written by an older semcontrib (one file per image): analyse the images into a new " \
            "corpus" if manifest.get("format") == "semcontrib-corpus/1" else ""
        raise CorpusError(f"{where}: unknown corpus format {manifest.get('format')!r}{hint}")
    heads = manifest.get("heads")
    if not isinstance(heads, dict) or not heads or not all(
            isinstance(h, str) and isinstance(c, list) and all(isinstance(x, str) for x in c)
            for h, c in heads.items()):
        raise bad("heads must map head names to lists of class names")
    methods = manifest.get("methods")
    if not isinstance(methods, dict) or not methods:
        raise bad("methods must be a non-empty object")
    for m, info in methods.items():
        if not isinstance(info, dict):
            raise bad(f"method {m!r} must be an object")
        try:
            _check_name(m)
            _check_key(info.get("key", ""))
        except CorpusError as exc:
            raise bad(str(exc)) from None
    reg = manifest.get("regions")
    if not isinstance(reg, dict) or not isinstance(reg.get("vocabulary"), list) or \
            not all(isinstance(v, str) for v in reg["vocabulary"]):
        raise bad("regions.vocabulary must be a list of names")
    try:
        _check_name(reg.get("name", ""))
        _check_key(reg.get("key", ""))
        chunk_keys = reg.get("chunk_keys", {})
        if not isinstance(chunk_keys, dict) or not all(isinstance(c, str) and c.isdigit() for c in chunk_keys):
            raise CorpusError("regions.chunk_keys must map chunk numbers to keys")
        for k in chunk_keys.values():
            _check_key(k)
    except CorpusError as exc:
        raise bad(str(exc)) from None
    for k in ("head_order", "method_order"):
        if k in manifest and not (isinstance(manifest[k], list) and all(isinstance(x, str) for x in manifest[k])):
            raise bad(f"{k} must be a list of names")
    manifest_parts(manifest, where)
    return manifest


def manifest_parts(manifest: Mapping[str, Any], where: Path) -> list[Part]:
    """The table parts a manifest lists, each checked (names inside the corpus, known tables)."""
    parts = manifest.get("parts", [])
    if not isinstance(parts, list):
        raise CorpusError(f"{where}: malformed manifest: parts must be a list")
    return [Part.from_record(p, where) for p in parts]


def read_manifest(root: Path) -> dict[str, Any] | None:
    """The manifest of the corpus at ``root``, validated; None when there is none."""
    mpath = Path(root) / MANIFEST
    if not mpath.is_file():
        return None
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise CorpusError(f"{mpath}: manifest larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CorpusError(f"{mpath}: unreadable manifest ({exc})") from exc
    return validate_manifest(manifest, mpath)
