"""Region edits stored in the corpus: format, validation, bounds, concurrent writers, a writer killed mid-write."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from semcontrib import edits as ed
from semcontrib.edits import add_edits, change_edits, edits_path, make_edit, read_edits, remove_edits
from semcontrib.segmentation.annotations import AnnotationSource

RECT = [[1, 1], [5, 1], [5, 4], [1, 4]]


def edit(label="eyes", image_id="cat-0123456789", polygon=RECT, n=None, **kw):
    kw.setdefault("file_name", "cat.jpg")
    kw.setdefault("width", 8)
    kw.setdefault("height", 6)
    if n is not None:
        kw["edit_id"] = f"{n:032x}"
    return make_edit(image_id=image_id, label=label, polygon=polygon, **kw)


def test_stored_file_is_coco_that_the_annotations_source_reads(tmp_path):
    a, b = edit(n=1), edit("animal", polygon=[[0, 0], [8, 0], [0, 6]], inside="dog", n=2)
    add_edits(tmp_path, [a, b])
    path = edits_path(tmp_path)
    assert path == tmp_path / "annotations" / "edits.json"
    data = json.loads(path.read_text())
    assert data["info"]["format"] == "semcontrib-edits/1"
    assert data["images"] == [{"id": "cat-0123456789", "file_name": "cat.jpg", "width": 8, "height": 6}]
    first = data["annotations"][0]
    assert first["segmentation"] == [[1, 1, 5, 1, 5, 4, 1, 4]] and first["bbox"] == [1, 1, 4, 3]
    assert first["area"] == 12.0 and first["semcontrib"]["edit_id"] == f"{1:032x}"
    assert data["annotations"][1]["semcontrib"]["inside"] == "dog"
    # read back equal, and the annotations source sees the same shapes as a plain COCO file
    assert read_edits(path) == [a, b]
    src = AnnotationSource(path)
    assert src.vocabulary == ("animal", "eyes")
    rec = src.lookup(type("I", (), {"path": "/x/cat.jpg", "image_id": "other"})())  # type: ignore[arg-type]
    assert rec is not None and [r.label for r in rec.regions] == ["eyes", "animal"]
    mask = rec.regions[0].rasterize(6, 8)
    expected = np.zeros((6, 8), bool)
    expected[1:4, 1:5] = True  # pixel centres inside the rectangle [1, 5) x [1, 4)
    assert np.array_equal(mask, expected)


def test_append_is_idempotent_by_edit_id_and_remove_deletes(tmp_path):
    a, b = edit(n=1), edit(n=2)
    assert add_edits(tmp_path, [a]).added == (a.edit_id,)
    again = add_edits(tmp_path, [a, b])  # a retried request carrying a again
    assert again.added == (b.edit_id,) and [e.edit_id for e in again.edits] == [a.edit_id, b.edit_id]
    gone = remove_edits(tmp_path, [a.edit_id, "f" * 32])
    assert gone.removed == (a.edit_id,) and read_edits(edits_path(tmp_path)) == [b]
    before = edits_path(tmp_path).stat().st_mtime_ns
    assert change_edits(tmp_path).edits == (b,)  # nothing to do writes nothing
    assert edits_path(tmp_path).stat().st_mtime_ns == before


@pytest.mark.parametrize(("kw", "match"), [
    ({"label": ""}, "label must be 1 to 64 printable"),
    ({"label": "x" * 65}, "label must be 1 to 64 printable"),
    ({"label": "a\nb"}, "label must be 1 to 64 printable"),
    ({"label": 3}, "label must be text"),
    ({"inside": "\x00"}, "inside must be 1 to 64"),
    ({"polygon": [[0, 0], [1, 1]]}, "a polygon needs 3 to 1000 points, got 2"),
    ({"polygon": [[0, 0]] * 1001}, "a polygon needs 3 to 1000 points, got 1001"),
    ({"polygon": [[0, 0], [1, float("nan")], [2, 2]]}, "finite"),
    ({"polygon": [[0, 0], [1, True], [2, 2]]}, r"\[x, y\] numbers"),
    ({"polygon": [[0, 0], [1, 1, 1], [2, 2]]}, r"\[x, y\] numbers"),
    ({"image_id": "../etc"}, "invalid image id"),
    ({"file_name": "a/b.jpg"}, "base name"),
    ({"width": 0}, "width must be an integer from 1"),
    ({"height": 2.5}, "height must be an integer"),
    ({"edit_id": "XYZ"}, "edit_id must be 32 lower-case hex"),
    ({"created": "yesterday"}, "created must be an ISO 8601"),
    ({"shape": "circle"}, "shape must be one of"),
])
def test_bad_edits_are_refused_with_a_clear_message(kw, match):
    with pytest.raises(ValueError, match=match):
        edit(**kw)


def test_bounds_per_image_and_per_file(tmp_path, monkeypatch):
    monkeypatch.setattr(ed, "MAX_EDITS_PER_IMAGE", 3)
    add_edits(tmp_path, [edit(n=k) for k in range(3)])
    with pytest.raises(ValueError, match="more than 3 edits"):
        add_edits(tmp_path, [edit(n=9)])
    assert len(read_edits(edits_path(tmp_path))) == 3  # nothing written
    add_edits(tmp_path, [edit(n=9, image_id="dog-0123456789")])  # another image has room
    monkeypatch.setattr(ed, "MAX_EDITS_BYTES", 2000)
    with pytest.raises(ValueError, match="over the limit of 2000"):
        add_edits(tmp_path, [edit(n=10, image_id="cow-0123456789")])
    edits_path(tmp_path).write_bytes(b" " * 2001)
    with pytest.raises(ValueError, match="2001 bytes, over the limit of 2000"):
        read_edits(edits_path(tmp_path))


@pytest.mark.parametrize(("change", "match"), [
    (lambda d: d["annotations"][0].pop("semcontrib"), "lacks the 'semcontrib' object"),
    (lambda d: d["annotations"][1]["semcontrib"].update(edit_id=f"{1:032x}"), "appears twice"),
    (lambda d: d["annotations"][0].update(image_id="nobody"), "unknown image"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 1, 1, 2]]), "polygon"),
    (lambda d: d["annotations"][0].update(segmentation=[[0, 0, 1, 1]]), "polygon"),
    (lambda d: d["categories"][0].update(name=""), "label must be 1 to 64"),
    (lambda d: d["images"][0].update(width=-3), "image entry width must be >= 0"),
    (lambda d: d.pop("images"), "lacks 'images'"),
])
def test_a_damaged_file_is_refused_when_read_and_never_overwritten(tmp_path, change, match):
    add_edits(tmp_path, [edit(n=1), edit(n=2)])
    path = edits_path(tmp_path)
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    damaged = path.read_bytes()
    with pytest.raises(ValueError, match=match):
        read_edits(path)
    with pytest.raises(ValueError, match=match):
        add_edits(tmp_path, [edit(n=3)])
    assert path.read_bytes() == damaged


def test_not_json_is_refused(tmp_path):
    path = edits_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"{\"images\": [")
    with pytest.raises(ValueError, match="not valid JSON"):
        read_edits(path)
    assert read_edits(tmp_path / "none.json") == []


WRITER = textwrap.dedent("""
    import sys
    from semcontrib.edits import add_edits, make_edit
    root, tag, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for k in range(n):
        e = make_edit(image_id=f"img{k % 3}-0123456789", file_name=f"img{k % 3}.jpg", width=8, height=6,
                      label=f"w{tag}", polygon=[[0, 0], [4, 0], [4, 4]], edit_id=f"{tag:016x}{k:016x}")
        add_edits(root, [e])
""")


def test_two_writer_processes_lose_and_duplicate_nothing(tmp_path):
    n = 25
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(tag), str(n)], env=env)
             for tag in (1, 2)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    ids = [e.edit_id for e in read_edits(edits_path(tmp_path))]
    assert len(ids) == len(set(ids)) == 2 * n
    # each writer's edits in the order it wrote them
    for tag in (1, 2):
        mine = [i for i in ids if i.startswith(f"{tag:016x}")]
        assert mine == [f"{tag:016x}{k:016x}" for k in range(n)]


KILLED = textwrap.dedent("""
    import os, sys, time
    from semcontrib.edits import add_edits, make_edit
    real = os.fsync
    def slow(fd):  # the new file is written but not yet renamed: stop here
        print("writing", flush=True)
        time.sleep(60)
    os.fsync = slow
    e = make_edit(image_id="cat-0123456789", file_name="cat.jpg", width=8, height=6, label="new",
                  polygon=[[0, 0], [4, 0], [4, 4]], edit_id="e" * 32)
    add_edits(sys.argv[1], [e])
""")


def test_a_writer_killed_mid_write_leaves_the_old_file(tmp_path):
    add_edits(tmp_path, [edit(n=1)])
    old = edits_path(tmp_path).read_bytes()
    p = subprocess.Popen([sys.executable, "-c", KILLED, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)
    assert edits_path(tmp_path).read_bytes() == old
    assert list((tmp_path / "annotations").glob(".*.tmp"))  # the half-written temporary is there ...
    t0 = time.monotonic()
    add_edits(tmp_path, [edit(n=2)])  # ... the lock died with its holder, and the next writer cleans up
    assert time.monotonic() - t0 < 10
    assert not list((tmp_path / "annotations").glob(".*.tmp"))
    assert [e.edit_id for e in read_edits(edits_path(tmp_path))] == [f"{1:032x}", f"{2:032x}"]

