"""Store keys (semcontrib.engine.keys): each key hashes exactly the object the single-module pipeline hashed,
so corpora written before the engine split resume without recomputing anything. The reference below is the
pipeline's own formula, written out: sha256 of sorted JSON, 16 hex digits."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from semcontrib.engine import keys
from semcontrib.engine.inputs import InputEntry
from semcontrib.engine.plan import PlannedInput


def reference(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


M, R = "0123456789abcdef", "fedcba9876543210"


def test_hash_key_is_the_reference_and_ignores_key_order():
    assert keys.hash_key({"b": 1, "a": [1, 2]}) == reference({"a": [1, 2], "b": 1})
    assert keys.hash_key({"a": 1}) != keys.hash_key({"a": 2})
    assert len(keys.hash_key(None)) == 16


def test_method_and_external_keys_hash_what_the_pipeline_hashed(tmp_path: Path):
    params, heads, targets = {"layer": "layer4", "relu": False}, ["b", "a"], {"a": "among:cat,dog"}
    assert keys.method_key(M, "gradcam", params, heads, targets) == reference(
        {"model": M, "method": "gradcam", "params": params, "heads": ["a", "b"], "targets": targets})
    assert keys.method_key(M, "gradcam", params, ["a", "b"], targets) == keys.method_key(M, "gradcam", params, heads,
                                                                                         targets)  # head order
    assert keys.external_key(M, tmp_path, heads, {}) == reference(
        {"model": M, "external": str(tmp_path.resolve()), "heads": ["a", "b"], "targets": {}})


def test_validity_rows_images_and_model_keys_carry_their_versions():
    methods = {"lrp": M, "gradcam": R}
    config = {"steps": 8, "perturbation": "road"}
    vkey = keys.validity_key(M, R, methods, "road", "mean", config)
    assert vkey == reference({"model": M, "regions": R, "methods": methods, "baseline": "road", "basis": "mean",
                              "config": config, "validity": 3})
    vocabulary = ("sky", "ground")
    assert keys.rows_key(M, R, M, vkey, vocabulary) == reference(
        {"model": M, "regions": R, "method": M, "validity": vkey, "vocabulary": vocabulary, "rows": 2})
    assert keys.rows_key(M, R, M, None, vocabulary) != keys.rows_key(M, R, M, vkey, vocabulary)
    assert keys.images_key(M, ["a", "b"], R) == reference({"model": M, "heads": ["a", "b"], "regions": R,
                                                           "images": 2})
    assert keys.model_store_key(M, "fp32") == M
    assert keys.model_store_key(M, "bf16") == reference([M, "bf16"])


@pytest.mark.parametrize("marks", [[], ["", ""]])
def test_a_chunk_without_region_edits_keeps_the_region_key(marks):
    assert keys.chunk_region_key(R, marks) == R


def test_a_chunk_with_region_edits_gets_a_key_of_its_own():
    marks = ["", "edit-3f"]
    assert keys.chunk_region_key(R, marks) == reference({"regions": R, "edits": marks})


def test_digests_of_members_inputs_files_and_validity():
    a = PlannedInput(InputEntry(Path("/x/a.jpg"), {"split": "test"}), "a-0123456789", "f" * 64, 0, 0)
    b = PlannedInput(InputEntry(Path("/x/b.jpg")), "b-0123456789", "", reason="unreadable file: gone")
    assert keys.members_digest([a, b]) == reference(["a-0123456789", "b-0123456789"])
    assert keys.inputs_digest([a, b], str) == reference(
        [("a-0123456789", "/x/a.jpg", [("split", "test")], ""), ("b-0123456789", "/x/b.jpg", [], b.reason)])
    assert keys.files_digest([10, -1]) == reference([10, -1])
    assert keys.validity_digest(R, {"b": "2", "a": "1"}) == reference([R, [("a", "1"), ("b", "2")]])


def test_the_fingerprint_changes_with_settings_model_regions_and_precision():
    base = keys.run_fingerprint({"methods": ["lrp"]}, {"name": "m"}, "grid", "fp32")
    assert base == reference({"settings": {"methods": ["lrp"]}, "version": keys.package_versions(["semcontrib"]),
                              "model": {"name": "m"}, "regions": "grid", "precision": "fp32", "identity": 2})
    others = [keys.run_fingerprint({"methods": ["ig"]}, {"name": "m"}, "grid", "fp32"),
              keys.run_fingerprint({"methods": ["lrp"]}, None, "grid", "fp32"),
              keys.run_fingerprint({"methods": ["lrp"]}, {"name": "m"}, "landscape", "fp32"),
              keys.run_fingerprint({"methods": ["lrp"]}, {"name": "m"}, "grid", "bf16")]
    assert len({base, *others}) == 5
