"""The planner on columns against a reference that plans one input at a time (the rules as the engine
before vectorised planning applied them): ids, chunks, positions, reasons, the plan rows written, change
detection on size and time, removed and added inputs; a folder's listing as columns against a list of the
same paths; and planning never imports torch."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from semcontrib import corpus as cstore
from semcontrib.engine.inputs import InputEntry, InputList, make_image_id, read_inputs
from semcontrib.engine.plan import Plan, PlannedInput, make_plan
from semcontrib.engine.workers import path_text
from semcontrib.imageio import list_images, scan_images, sha256_file

REPO = Path(__file__).resolve().parents[2]
CHUNK = 3


def reference_plan(root: Path, entries: list[InputEntry], chunk_size: int) -> tuple[list[PlannedInput], int, list]:
    """The plan one input at a time (reads the plan, writes nothing): the inputs as planned, how many are
    new, and the plan rows that should be appended (as tuples in ``PLAN_COLUMNS`` order)."""
    old = cstore.read_plan(root).to_dict("records")
    latest = {r["path"]: r for r in old}  # the last record of each path
    first: dict[str, dict] = {}
    for r in old:
        first.setdefault(r["image_id"], r)
    next_chunk = max((r["chunk"] for r in old), default=-1) + 1
    planned, seen, copies, new, rows = [], {}, Counter(), 0, []
    for e in entries:
        key = path_text(Path(os.path.abspath(e.path)))
        try:
            st = os.stat(e.path)
        except OSError as exc:
            i = make_image_id(e.path, hashlib.sha256(os.fsencode(e.path)).hexdigest())
            seen.setdefault(i, e)
            planned.append(PlannedInput(e, i, "", reason=f"unreadable file: {exc.strerror}"))
            continue
        rec = latest.get(key)
        hashed = not (rec is not None and rec["size"] == st.st_size and rec["mtime_ns"] == st.st_mtime_ns)
        sha = sha256_file(e.path) if hashed else rec["sha256"]
        i = make_image_id(e.path, sha) if hashed else rec["image_id"]
        if i in seen:
            copies[i] += 1
            reason = f"duplicate of {path_text(seen[i].path)}"
            planned.append(PlannedInput(e, f"{i}-dup{copies[i]}", sha, reason=reason))
            continue
        seen[i] = e
        if i in first:
            c, q = first[i]["chunk"], first[i]["position"]
        else:
            c, q = next_chunk + new // chunk_size, new % chunk_size
            new += 1
        if hashed or i not in first:
            rows.append((i, c, q, key, st.st_size, st.st_mtime_ns, sha))
        planned.append(PlannedInput(e, i, sha, c, q))
    return planned, new, rows


def check_against_reference(root: Path, entries, chunk_size: int = CHUNK) -> Plan:
    """Plan ``entries`` and compare everything with the reference; return the plan."""
    expected, new, rows = reference_plan(root, list(entries), chunk_size)
    before = len(cstore.read_plan(root))
    plan = make_plan(root, entries, chunk_size)
    chunks: dict[int, list[PlannedInput]] = {}
    for p in sorted((p for p in expected if p.chunk >= 0), key=lambda p: (p.chunk, p.position)):
        chunks.setdefault(p.chunk, []).append(p)
    assert dict(plan.chunks) == chunks  # members made per chunk
    assert list(plan.chunks) == list(chunks)
    assert plan.inputs == expected
    assert plan.new_images == new
    assert dict(plan.chunks) == chunks  # members taken from the inputs made
    assert plan.path_texts().to_pylist() == [path_text(p.entry.path) for p in expected]
    assert plan.skipped() == [(path_text(p.entry.path), p.reason) for p in expected if p.reason]
    assert all(m is plan.inputs[k] for c in chunks for m, k in zip(plan.chunks[c], plan.chunk_rows(c)))
    for c in chunks:
        assert plan.chunk_ids(c) == [p.image_id for p in chunks[c]] and c in plan.chunks
    assert -1 not in plan.chunks and "0" not in plan.chunks
    written = cstore.read_plan(root).iloc[before:]
    assert list(written.itertuples(index=False, name=None)) == rows
    return plan


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def files(tmp_path):
    folder = tmp_path / "in"
    for k in range(7):
        write(folder / ("sub" if k % 2 else "") / f"im{k}.jpg", bytes([k]) * (k + 1))
    write(folder / "other" / "im3.jpg", bytes([3]) * 4)  # sub/im3.jpg again (name and content): a duplicate
    write(folder / "notes.txt", b"not an image name")
    return folder


def test_the_listing_as_columns_is_the_listing_of_paths(files):
    scan = scan_images(files)
    assert [Path(files, r) for r in scan.relative] == list_images(files)
    assert scan.relative.tolist() == sorted(scan.relative.tolist())
    assert scan.size.tolist() == [os.stat(Path(files, r)).st_size for r in scan.relative]
    assert scan.mtime_ns.tolist() == [os.stat(Path(files, r)).st_mtime_ns for r in scan.relative]
    entries = read_inputs(files)
    assert isinstance(entries, InputList) and list(entries) == [InputEntry(p) for p in list_images(files)]
    assert entries[1] == list(entries)[1] and entries[-2:] == list(entries)[-2:]


def test_first_run_rerun_and_changes_equal_the_reference(files, tmp_path):
    root = tmp_path / "corpus"
    root.mkdir()
    im2_time = os.stat(files / "im2.jpg").st_mtime_ns
    first = check_against_reference(root, read_inputs(files))
    assert first.new_images == 7 and sum(bool(p.reason) for p in first.inputs) == 1
    parts = sorted(cstore.StorePaths(root).plan.glob("part-*"))
    again = check_against_reference(root, read_inputs(files))  # nothing to do: nothing hashed, nothing written
    assert again.new_images == 0 and sorted(cstore.StorePaths(root).plan.glob("part-*")) == parts
    assert again.image_ids.to_pylist() == first.image_ids.to_pylist() and (again.chunk == first.chunk).all()
    # a new time (same content) keeps the id and writes a row; new content is a new image in a new chunk;
    # a removed file leaves its chunk with fewer members; an added one goes to a new chunk
    os.utime(files / "im0.jpg", ns=(1, 1))
    write(files / "im2.jpg", b"other content")
    (files / "im4.jpg").unlink()
    write(files / "zz_new.bmp", b"added")
    changed = check_against_reference(root, read_inputs(files))
    ids = dict(zip([path_text(e.path) for e in changed.entries], changed.image_ids.to_pylist()))
    assert ids[str(files / "im0.jpg")] == ids_of(first)[str(files / "im0.jpg")]
    assert ids[str(files / "im2.jpg")] != ids_of(first)[str(files / "im2.jpg")]
    assert changed.new_images == 2 and len(changed.chunks) == len(first.chunks) + 1
    # the old content and time back under its name: the image it was, in its old chunk (its latest record
    # is of the other content: hashed again, and recorded again)
    (files / "im2.jpg").write_bytes(bytes([2]) * 3)
    os.utime(files / "im2.jpg", ns=(im2_time, im2_time))
    back = check_against_reference(root, read_inputs(files))
    assert ids_of(back)[str(files / "im2.jpg")] == ids_of(first)[str(files / "im2.jpg")] and back.new_images == 0


def ids_of(plan: Plan) -> dict[str, str]:
    return dict(zip([path_text(e.path) for e in plan.entries], plan.image_ids.to_pylist()))


def test_a_folder_and_a_list_of_its_paths_plan_alike(files, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    listed = read_inputs(files)
    by_list = [InputEntry(p) for p in list_images(files)] + [InputEntry(tmp_path / "gone.jpg")]
    for new in (7, 0):  # twice: the second time every file is known
        from_folder, from_list = make_plan(a, listed, CHUNK), check_against_reference(b, by_list)
        assert from_folder.inputs == from_list.inputs[:-1]
        assert from_folder.new_images == from_list.new_images == new
    assert from_list.inputs[-1].reason.startswith("unreadable file: ")
    assert from_list.inputs[-1].chunk == -1
    pd.testing.assert_frame_equal(cstore.read_plan(a), cstore.read_plan(b))


def test_names_that_are_not_utf8_plan_like_any_other(files, tmp_path):
    odd = os.fsdecode(b"odd\xff name.png")
    write(files / odd, b"odd bytes")
    root = tmp_path / "corpus"
    root.mkdir()
    plan = check_against_reference(root, read_inputs(files))
    assert any(p.entry.path.name == odd and not p.reason for p in plan.inputs)
    assert "odd\\xff name.png" in "".join(cstore.read_plan(root)["path"])
    assert check_against_reference(root, read_inputs(files)).new_images == 0


def test_a_folder_given_as_the_current_folder(files, tmp_path, monkeypatch):
    monkeypatch.chdir(files)
    root = tmp_path / "corpus"
    root.mkdir()
    plan = check_against_reference(root, read_inputs("."))
    assert plan.path_texts().to_pylist()[:2] == ["im0.jpg", "im2.jpg"]


def test_an_input_list_excludes_the_corpus_inside_the_folder(files):
    out = files / "sub"
    kept = read_inputs(read_inputs(files), exclude=out)
    assert [e.path for e in kept] == [p for p in list_images(files) if out not in p.parents]
    assert read_inputs(kept, exclude=out) is kept


def test_planning_and_a_plan_lookup_never_import_torch(files, tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from semcontrib.pipeline import make_plan, read_inputs
        for _ in range(2):  # the first run, then a rerun with nothing to do
            plan = make_plan(Path({str(tmp_path / 'c')!r}), read_inputs(Path({str(files)!r})), 3)
            members = plan.chunks[0]
        import semcontrib.engine
        print(plan.new_images, len(members), sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])
    """)
    (tmp_path / "c").mkdir()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["0", "3", "[]"], out.stdout + out.stderr


@pytest.mark.parametrize("odd", ["", 'quote".jpg', "café.jpg", "back\\slash.jpg"])
def test_the_inputs_digest_from_columns_is_the_digest_of_the_inputs(files, tmp_path, odd):
    """keys.plan_inputs_digest (Arrow columns, no PlannedInput per input) gives keys.inputs_digest's value,
    duplicates' reasons included, or None where JSON would escape the text (the caller falls back)."""
    from semcontrib.engine import keys

    if odd:
        write(files / odd, b"odd")
    root = tmp_path / "corpus"
    root.mkdir()
    plan = make_plan(root, read_inputs(files), CHUNK)
    assert plan.reasons  # the duplicate is in the digest with its reason
    fast = keys.plan_inputs_digest(plan)
    if odd:
        assert fast is None
    else:
        assert fast == keys.inputs_digest(plan.inputs, path_text)
    assert keys.plan_inputs_digest(make_plan(root, [InputEntry(p) for p in list_images(files)], CHUNK)) is None


def test_plan_parts_of_either_encoding_read_as_one_table(tmp_path: Path) -> None:
    """Plan parts are written plain-encoded with zstd (faster to read at 1M rows); a part an older engine
    wrote (dictionary + snappy, pyarrow's defaults) still reads, and a later rerun reuses its records."""
    import pyarrow.parquet as pq

    from semcontrib.store.plan import read_plan_table

    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        (folder / f"im{i}.jpg").write_bytes(bytes([i]) * 9)
    root = tmp_path / "c"
    first = make_plan(root, read_inputs(folder), CHUNK)
    [part] = sorted((root / "store" / "plan").glob("part-*.parquet"))
    meta = pq.ParquetFile(part).metadata.row_group(0)
    encodings = {meta.column(k).path_in_schema: (meta.column(k).compression, meta.column(k).encodings)
                 for k in range(meta.num_columns)}
    assert encodings["path"][0] == "ZSTD"
    assert "RLE_DICTIONARY" not in encodings["path"][1]
    assert "RLE_DICTIONARY" in encodings["chunk"][1]
    table = pq.read_table(part)
    pq.write_table(table, part)  # as an older engine wrote it: dictionaries, snappy
    assert "RLE_DICTIONARY" in pq.ParquetFile(part).metadata.row_group(0).column(3).encodings
    (folder / "im9.jpg").write_bytes(b"new")
    again = make_plan(root, read_inputs(folder), CHUNK)
    assert again.new_images == 1
    assert again.image_ids.to_pylist()[:4] == first.image_ids.to_pylist()
    assert read_plan_table(root).num_rows == 5
