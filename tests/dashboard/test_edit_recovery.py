"""Issue 21's fault acceptance: the dashboard killed (SIGKILL) while an edit is saved, and again while the
"Apply" recomputation runs; after a restart no edit is lost, the tables served are the old generation or
the new one (never a mixture), and the same ``analyze`` finishes the interrupted work, after which a
second one computes nothing.

The killed processes run the dashboard's own code (:func:`edit_ui.save`, :func:`edit_ui.apply_edits_job`)
in a subprocess that sends itself SIGKILL at a chosen point: inside the edits file's write (written, not
yet renamed), before a chosen store write of the recomputation, or half-way through publishing the tables
(one file linked into place, the others not). The model is the tests' tiny network, handed to the job's
``analyze`` (a dashboard started on a corpus of a named model passes none: the corpus records it).
"""

from __future__ import annotations

import ast
import json
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcontrib.corpus import Corpus
from semcontrib.dashboard import edit_ui
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.edits import add_edits, edits_path, make_edit, read_edits
from semcontrib.pipeline import analyze
from tests.conftest import synthetic_rgb, tiny_model

REPO = Path(__file__).resolve().parents[2]
SETTINGS: dict[str, Any] = {"methods": ["lrp", "gradcam"], "regions": "grid:2x2", "batch_size": 3,
                            "chunk_size": 3, "validity": True, "workers": 0}

# The job's process: the dashboard's apply_edits_job, with the tiny model handed to its analyze, killed
# (SIGKILL, sent to itself) at the point named on the command line.
JOB = textwrap.dedent("""
    import os, signal, sys
    import torch
    torch.set_num_threads(int(sys.argv[4]))  # the parent's: float sums depend on the thread count
    sys.path.insert(0, sys.argv[1])
    from tests.conftest import tiny_model
    import semcontrib.pipeline as pipeline
    from semcontrib.store import files, generations
    from semcontrib.dashboard import edit_ui
    from semcontrib.dashboard.query import CorpusQuery

    root, point = sys.argv[2], sys.argv[3]
    real_analyze = pipeline.analyze
    pipeline.analyze = lambda inputs, out, **kw: real_analyze(inputs, out, model=tiny_model(), **kw)

    def die():
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    if point.startswith("write:"):  # before the n-th store write
        n, real_write, seen = int(point[6:]), files._atomic_write, []
        def write(path, data):
            seen.append(path)
            if len(seen) == n:
                die()
            real_write(path, data)
        files._atomic_write = write
    elif point == "publish":  # one table linked into place, the others not
        real_link = generations._link_replace
        def link(src, dst):
            real_link(src, dst)
            die()
        generations._link_replace = link
    print(edit_ui.apply_edits_job(lambda text: None, CorpusQuery(root)), flush=True)
""")

# The server's save callback, killed inside the edits file's write (the new file written, not renamed).
SAVE = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, sys.argv[1])
    from semcontrib.dashboard import edit_ui
    from semcontrib.dashboard.query import CorpusQuery

    def fsync(fd):
        print("writing", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    os.fsync = fsync
    query = CorpusQuery(sys.argv[2])
    request = {"image_id": sys.argv[3], "shapes": [{"type": "rect", "x0": 2, "y0": 2, "x1": 20, "y1": 16}],
               "new_label": "ears", "version": 0}
    print(edit_ui.save(query, edit_ui.SAVE, request), flush=True)
""")


def run_analyze(root: Path, folder: Path) -> Any:
    return analyze(folder, root, model=tiny_model(), **SETTINGS)


def tables(root: Path) -> list[pd.DataFrame]:
    """The corpus's three tables as a reader gets them, in one canonical row order, without paths."""
    c = Corpus.open(root)
    keys = ("image_id", "head", "method", "region_index")
    return [df.drop(columns=["path"], errors="ignore").sort_values([k for k in keys if k in df], kind="stable")
            .reset_index(drop=True) for df in (c.images, c.attributions, c.contributions)]


def same(a: list[pd.DataFrame], b: list[pd.DataFrame]) -> bool:
    try:
        for x, y in zip(a, b, strict=True):
            pd.testing.assert_frame_equal(x, y)
    except AssertionError:
        return False
    return True


def eyes_edit(root: Path) -> Any:
    """A new label (``eyes``) on the fourth image: the vocabulary grows, so every chunk is recomputed."""
    q = CorpusQuery(root)
    image = str(q.ids[3])
    info = edit_ui._image_info(q, image)
    assert info is not None
    return make_edit(image_id=image, file_name=info.file_name, width=info.width, height=info.height, label="eyes",
                     polygon=[[0, 0], [info.width / 2, 0], [info.width / 2, info.height / 2]], edit_id="e" * 32,
                     created="2026-12-05T00:00:00Z")


def job(root: Path, point: str) -> subprocess.CompletedProcess[str]:
    import torch

    return subprocess.run([sys.executable, "-c", JOB, str(REPO), str(root), point, str(torch.get_num_threads())],
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An analysed corpus (``old``), the same corpus with the ``eyes`` edit applied by an uninterrupted job
    (``new``), and the store writes that job made, in order."""
    base = tmp_path_factory.mktemp("recovery")
    folder = base / "photos"
    folder.mkdir()
    rng = np.random.default_rng(21)
    for i in range(7):
        Image.fromarray(synthetic_rgb(rng, 40 + 4 * i, 56)).save(folder / f"p{i:02d}.png")
    old = base / "old"
    run_analyze(old, folder)
    new = Path(shutil.copytree(old, base / "new"))
    add_edits(new, [eyes_edit(new)])
    from semcontrib.store import files

    writes: list[Path] = []
    real_write = files._atomic_write

    def write(path: Path, data: bytes) -> None:
        writes.append(Path(path))
        real_write(path, data)

    mp = pytest.MonkeyPatch()
    mp.setattr(files, "_atomic_write", write)
    mp.setattr("semcontrib.pipeline.analyze",
               lambda inputs, out, _real=analyze, **kw: _real(inputs, out, model=tiny_model(), **kw))
    try:
        result = edit_ui.apply_edits_job(lambda text: None, CorpusQuery(new))
    finally:
        mp.undo()
    assert result["ok"], result
    computed = ast.literal_eval(result["message"].removeprefix("recomputed: "))
    assert "eyes" in Corpus.open(new).vocabulary
    return {"folder": folder, "old": old, "new": new, "writes": writes, "base": base, "computed": computed,
            "old_tables": tables(old), "new_tables": tables(new)}


def _kind(path: Path, root: Path) -> str:
    rel = path.relative_to(root).parts
    if rel[0] == "store":
        return rel[1]  # images, pred, regions, attr, validity, plan
    return "part" if path.name.startswith("part-") else path.name


def kill_points(writes: list[Path], root: Path) -> dict[str, str]:
    """Where the job is killed: before its first write, half-way through its work files (some chunks
    stored, others not), before its first table part, before the manifest, and half-way through publishing."""
    kinds = [_kind(p, root) for p in writes]
    work = [n for n, k in enumerate(kinds, start=1) if k in ("images", "pred", "regions", "attr", "validity")]
    return {"first write": "write:1", "half the work": f"write:{work[len(work) // 2]}",
            "first part": f"write:{kinds.index('part') + 1}",
            "manifest": f"write:{kinds.index('manifest.json') + 1}", "publish": "publish"}


def test_the_job_writes_work_files_of_every_chunk_then_tables(worlds):
    kinds = [_kind(p, worlds["new"]) for p in worlds["writes"]]
    assert kinds.count("regions") == 3  # a new label: every chunk's regions are stored again (new vocabulary)
    assert {"attr", "validity", "part", "images.parquet", "manifest.json"} <= set(kinds), kinds
    assert kinds.index("part") > max(n for n, k in enumerate(kinds) if k in ("regions", "attr", "validity"))


@pytest.mark.parametrize("where", ["first write", "half the work", "first part", "manifest", "publish"])
def test_apply_killed_then_restarted_serves_old_or_new_tables_and_the_same_analyze_finishes(worlds, where):
    root = Path(shutil.copytree(worlds["old"], worlds["base"] / f"killed-{where.replace(' ', '-')}"))
    edit = eyes_edit(root)
    add_edits(root, [edit])
    stored = edits_path(root).read_bytes()
    r = job(root, kill_points(worlds["writes"], worlds["new"])[where])
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stdout, r.stderr[-2000:])

    # restarted: the edit is there, and the tables are one generation, the old one or the new one
    assert edits_path(root).read_bytes() == stored and read_edits(edits_path(root)) == [edit]
    served = tables(root)
    is_old, is_new = same(served, worlds["old_tables"]), same(served, worlds["new_tables"])
    assert is_old or is_new, f"killed at {where}: the tables are neither the old nor the new generation"
    assert is_old or where == "publish"  # before publishing, nothing of the new generation is served
    q = CorpusQuery(root)  # the restarted dashboard's reader agrees with the tables it serves
    assert ("eyes" in q.vocabulary) == is_new
    assert ("eyes" in set(served[2]["region"])) == is_new

    # the same analyze finishes what the job left (reading the work it stored), then computes nothing
    rep = run_analyze(root, worlds["folder"])
    assert same(tables(root), worlds["new_tables"])
    full = worlds["computed"]
    if where == "first write":
        assert rep.computed == full
    elif where == "half the work":  # the chunks stored before the kill are read, not computed again
        assert 0 < sum(rep.computed.values()) < sum(full.values()), (rep.computed, full)
    else:  # every work file was stored: publishing is all that is left
        assert set(rep.computed.values()) == {0}, rep.computed
    again = run_analyze(root, worlds["folder"])
    assert set(again.computed.values()) == {0}, again.computed
    assert read_edits(edits_path(root)) == [edit]


def test_dashboard_killed_while_saving_an_edit_loses_nothing_and_then_saves(worlds, tmp_path):
    root = Path(shutil.copytree(worlds["old"], tmp_path / "c"))
    first = eyes_edit(root)
    add_edits(root, [first])
    stored = edits_path(root).read_bytes()
    image = first.image_id
    p = subprocess.Popen([sys.executable, "-c", SAVE, str(REPO), str(root), image], stdout=subprocess.PIPE,
                         text=True)
    out, _ = p.communicate(timeout=120)
    assert p.returncode == -signal.SIGKILL and out.strip() == "writing", (p.returncode, out)
    assert edits_path(root).read_bytes() == stored  # the old file, whole

    # restarted: the page opens, the stored edit is listed, the same save goes through once
    q = CorpusQuery(root)
    _, items, options = edit_ui.figure_for(q, image, "drawrect")
    assert [o["value"] for o in options] == [first.edit_id]
    request = {"image_id": image, "shapes": [{"type": "rect", "x0": 2, "y0": 2, "x1": 20, "y1": 16}],
               "new_label": "ears", "version": 0}
    assert edit_ui.save(q, edit_ui.SAVE, request) == (1, "saved 1 edit(s) labelled 'ears'; press Apply to recompute")
    assert [e.label for e in read_edits(edits_path(root))] == ["eyes", "ears"]
    assert not list((root / "annotations").glob(".*.tmp"))  # the killed writer's temporary was removed
    assert json.loads(edits_path(root).read_text())["info"]["format"] == "semcontrib-edits/1"
