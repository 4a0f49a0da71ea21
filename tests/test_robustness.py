"""Issue 9: corrupt state, faults, odd names, concurrent runs, hostile corpora, spreadsheet-safe exports.

Every fault test compares the final tables with those of one clean, uninterrupted run.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcontrib import corpus as cstore
from semcontrib.corpus import Corpus, CorpusBusyError, CorpusError
from semcontrib.export import export_table, spreadsheet_safe
from semcontrib.pipeline import analyze
from semcontrib.regions import ImageInput, RegionError, RegionMap
from semcontrib.store import files as store_files
from semcontrib.store import generations as store_generations
from tests.conftest import synthetic_rgb, tiny_model

REPO = Path(__file__).resolve().parent.parent
FAST = {"ig": {"n_steps": 4}}


def run(folder: Path, out: Path, **kw: Any):
    kw.setdefault("model", tiny_model())
    kw.setdefault("method_params", FAST)
    kw.setdefault("methods", ["lrp", "gradcam", "ig"])
    kw.setdefault("batch_size", 3)
    kw.setdefault("chunk_size", 3)
    kw.setdefault("regions", "grid:2x2")
    kw.setdefault("validity", False)
    return analyze(folder, out, **kw)


def tables(out: Path) -> list[pd.DataFrame]:
    """The three tables, the partitioned ones in one canonical row order (parts come in run order)."""
    c = Corpus.open(out)
    keys = ("image_id", "head", "method", "region_index")
    return [c.images] + [df.sort_values([k for k in keys if k in df], kind="stable").reset_index(drop=True)
                         for df in (c.attributions, c.contributions)]


def assert_same_tables(a: Path, b: Path) -> None:
    for ta, tb in zip(tables(a), tables(b)):
        pd.testing.assert_frame_equal(ta.drop(columns=["path"], errors="ignore"),
                                      tb.drop(columns=["path"], errors="ignore"))


@pytest.fixture
def photos(tmp_path: Path, rng) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(7):
        Image.fromarray(synthetic_rgb(rng, 40 + 4 * i, 56)).save(folder / f"p{i:02d}.png")
    return folder


@pytest.fixture
def clean(photos: Path, tmp_path: Path) -> Path:
    run(photos, tmp_path / "clean")
    return tmp_path / "clean"


# --------------------------------------------------------------------------- corrupt work files


@pytest.mark.parametrize("kind", ["pred", "attr", "regions", "images"])
def test_truncated_work_file_is_found_deleted_and_recomputed(photos, clean, tmp_path, kind):
    out = tmp_path / "c"
    run(photos, out)
    victims = sorted(p for p in (out / "store" / kind).rglob("*") if p.is_file())
    victim = victims[1]
    victim.write_bytes(victim.read_bytes()[: max(1, victim.stat().st_size // 3)])
    rep = run(photos, out)
    assert str(victim) in rep.discarded
    assert_same_tables(clean, out)


def test_foreign_work_files_are_recomputed(photos, clean, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    attr = sorted((out / "store" / "attr").rglob("*.npz"))[0]
    np.savez(attr, something=np.zeros(3))  # a valid npz with the wrong arrays
    pred = sorted((out / "store" / "pred").rglob("*.npz"))[1]
    np.savez(pred, **{"logits/task_a": np.zeros(7, np.float32)})  # wrong shape
    reg = sorted((out / "store" / "regions").rglob("*.npz"))[2]
    reg.write_bytes(b"PK\x03\x04 not really a zip")
    rep = run(photos, out)
    assert len(rep.discarded) == 3
    assert_same_tables(clean, out)


def test_unreadable_table_is_rebuilt(photos, clean, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    part = sorted((out / "contributions").rglob("part-*.parquet"))[2]
    part.write_bytes(b"PAR1 garbage")
    with pytest.raises(CorpusError, match="run `semcontrib analyze` again"):
        Corpus.open(out)
    run(photos, out)
    assert_same_tables(clean, out)


# --------------------------------------------------------------------------- crashes and a full disk


class SimulatedCrash(BaseException):
    """Stands for SIGKILL: nothing in the library may catch it."""


def _failing_writes(monkeypatch, at: int, exc: BaseException) -> list[Path]:
    calls: list[Path] = []
    real = store_files._atomic_write

    def write(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == at:
            raise exc
        real(path, data)

    monkeypatch.setattr(store_files, "_atomic_write", write)
    return calls


def _count_writes(photos: Path, out: Path, monkeypatch) -> list[Path]:
    calls = _failing_writes(monkeypatch, at=-1, exc=SimulatedCrash())
    run(photos, out)
    monkeypatch.undo()
    return list(calls)


def test_crash_with_validity_and_region_methods_then_resume(photos, tmp_path, monkeypatch):
    kw = {"methods": ["gradcam", "occlusion"], "validity": True}
    run(photos, tmp_path / "clean_v", **kw)
    calls = _failing_writes(monkeypatch, at=-1, exc=SimulatedCrash())
    run(photos, tmp_path / "count_v", **kw)
    monkeypatch.undo()
    for seed in (5, 6):
        out = tmp_path / f"c{seed}"
        _failing_writes(monkeypatch, random.Random(seed).randint(1, len(calls) - 4), SimulatedCrash())
        with pytest.raises(SimulatedCrash):
            run(photos, out, **kw)
        monkeypatch.undo()
        run(photos, out, **kw)
        assert_same_tables(tmp_path / "clean_v", out)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_crash_at_a_random_write_then_resume_gives_identical_tables(photos, clean, tmp_path, monkeypatch, seed):
    writes = _count_writes(photos, tmp_path / "count", monkeypatch)
    rnd = random.Random(seed)
    # seed 3 crashes while the tables are being replaced (the last four writes)
    at = len(writes) - rnd.randint(0, 3) if seed == 3 else rnd.randint(1, len(writes) - 4)
    out = tmp_path / "c"
    _failing_writes(monkeypatch, at, SimulatedCrash())
    with pytest.raises(SimulatedCrash):
        run(photos, out)
    monkeypatch.undo()
    run(photos, out)
    assert_same_tables(clean, out)
    assert not list(out.rglob(".*.tmp"))


def test_disk_full_at_each_kind_of_write_then_resume(photos, clean, tmp_path, monkeypatch):
    writes = _count_writes(photos, tmp_path / "count", monkeypatch)
    first_of_kind: dict[str, int] = {}
    for i, p in enumerate(writes, start=1):
        kind = p.parent.parent.name if p.parent.parent.name in ("pred", "attr", "regions") else \
            p.parent.name if p.parent.name in ("images", "plan") else \
            "part" if p.name.startswith("part-") else p.name
        first_of_kind.setdefault(kind, i)
    assert {"pred", "attr", "regions", "images", "plan", "part", "manifest.json",
            "images.parquet"} <= set(first_of_kind)
    for kind, at in first_of_kind.items():
        out = tmp_path / f"full-{kind}"
        _failing_writes(monkeypatch, at, OSError(errno.ENOSPC, "No space left on device"))
        with pytest.raises(OSError, match="No space left"):
            run(photos, out)
        monkeypatch.undo()
        run(photos, out)  # space freed: the same command finishes
        assert_same_tables(clean, out)


_RUNNER = textwrap.dedent("""
    import sys
    import torch
    torch.set_num_threads({threads})  # the parent's: float sums depend on the thread count
    sys.path.insert(0, {repo!r})
    from tests.conftest import tiny_model
    from semcontrib.pipeline import analyze
    analyze({photos!r}, {out!r}, model=tiny_model(), methods=["lrp", "gradcam", "ig"],
            method_params={{"ig": {{"n_steps": 4}}}}, regions="grid:2x2", batch_size=3, chunk_size=3,
            validity=False, shard={shard})
""")


def _runner(photos: Path, out: Path, shard: tuple[int, int] | None = None) -> list[str]:
    import torch

    code = _RUNNER.format(repo=str(REPO), photos=str(photos), out=str(out), threads=torch.get_num_threads(),
                          shard=shard)
    return [sys.executable, "-c", code]


def test_shards_running_at_the_same_time_then_one_run_give_the_tables_of_one(photos, clean, tmp_path):
    out = tmp_path / "c"
    procs = [subprocess.Popen(_runner(photos, out, (i, 3)), stderr=subprocess.PIPE, text=True) for i in (1, 2, 3)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errs
    assert len(list((out / "store" / "plan").glob("part-*.parquet"))) == 1  # one plan, agreed by all three
    assert not (out / "manifest.json").exists()
    rep = run(photos, out)
    assert set(rep.computed.values()) == {0}
    assert_same_tables(clean, out)


@pytest.mark.parametrize("seed", [0, 1])
def test_killed_process_resumes_to_identical_tables(photos, clean, tmp_path, seed):
    out = tmp_path / "c"
    proc = subprocess.Popen(_runner(photos, out))
    # wait until the run has started writing, then kill it at a random moment
    t0 = time.time()
    while not (out / "store").exists() and time.time() - t0 < 60 and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(random.Random(seed).uniform(0.0, 1.0))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run(photos, out)
    assert_same_tables(clean, out)


def test_two_concurrent_runs_both_finish_with_the_tables_of_one(photos, clean, tmp_path):
    out = tmp_path / "c"
    procs = [subprocess.Popen(_runner(photos, out), stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert not any("Traceback" in e for e in errs)
    assert_same_tables(clean, out)


def test_a_second_writer_can_refuse_to_wait(tmp_path):
    root = tmp_path / "c"
    with cstore.run_lock(root):
        code = ("import sys; from pathlib import Path; from semcontrib.corpus import run_lock, CorpusBusyError\n"
                "try:\n with run_lock(Path(sys.argv[1]), wait=False): pass\n"
                "except CorpusBusyError as e: print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 3 and "another semcontrib run" in r.stdout
    assert issubclass(CorpusBusyError, CorpusError)


def test_readers_never_mix_generations(photos, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    gen = json.loads((out / "manifest.json").read_text())["generation"]
    assert sorted(p.name for p in (out / cstore.GENERATIONS).iterdir()) == [gen]
    # a publish that stopped between its renames: a top-level table of another generation is not
    # mixed in; the manifest's generation keeps its own copy, and that is what readers get
    df, _ = cstore.read_table(out / "images.parquet")
    (out / "images.parquet").unlink()  # break the link before writing another generation's table
    cstore.write_table(out / "images.parquet", df.iloc[:2], generation="other")
    c = Corpus.open(out)
    assert len(c.images) == len(df)
    # without that copy the reader refuses instead of mixing
    (out / cstore.GENERATIONS / gen / "images.parquet").unlink()
    with pytest.raises(CorpusError, match="generation"):
        Corpus.open(out)
    run(photos, out)
    c = Corpus.open(out)
    assert c.manifest["generation"] != gen and len(c.images) == len(df)
    assert len(list((out / cstore.GENERATIONS).iterdir())) == 1


def test_a_crash_during_publish_leaves_a_readable_corpus(photos, tmp_path, monkeypatch):
    out = tmp_path / "c"
    run(photos, out)
    before = [t.copy() for t in tables(out)]
    calls = []
    real = store_generations._link_replace

    def crash_after_first_link(src, dst):
        calls.append(dst)
        real(src, dst)
        if len(calls) == 1:
            raise SimulatedCrash()

    monkeypatch.setattr(store_generations, "_link_replace", crash_after_first_link)
    with pytest.raises(SimulatedCrash):
        run(photos, out, methods=["gradcam"])  # another generation, with other tables
    monkeypatch.undo()
    c = Corpus.open(out)  # readable: the new generation, whole
    assert set(c.contributions.method) == {"gradcam"} and len(c.images) == len(before[0])


# --------------------------------------------------------------------------- odd input


def test_odd_file_names_are_analysed_and_stored_safely(photos, tmp_path):
    raw = os.fsencode(photos) + b"/caf\xe9-latin1.png"
    Image.fromarray(synthetic_rgb(np.random.default_rng(5), 40, 40)).save(raw.decode("utf-8", "surrogateescape"))
    Image.fromarray(synthetic_rgb(np.random.default_rng(6), 40, 40)).save(photos / "new\nline.png")
    out = tmp_path / "c"
    rep = run(photos, out)
    images = pd.read_parquet(out / "images.parquet")
    assert rep.n_ok == 9 and (images.status == "ok").all()
    assert any("\\xe9" in p for p in images.path) and any("\n" in p for p in images.path)
    images.path.map(lambda s: s.encode("utf-8"))  # every stored name is valid UTF-8


def test_output_inside_the_input_folder_is_never_read_as_input(photos):
    out = photos / "corpus"
    first = run(photos, out)
    second = run(photos, out)
    assert first.n_inputs == second.n_inputs == 7 and second.computed["predictions"] == 0


def test_empty_folder_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images found"):
        run(tmp_path / "empty", tmp_path / "c")


class FlakySource:
    """Fails for a reason the input causes on one image and transiently on another."""

    name = "flaky"
    vocabulary = ("a", "b")
    params: dict[str, Any] = {}
    transient = True

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        if h == 40:
            raise RegionError("an input failure\nover two lines", permanent=True)
        if h == 44 and FlakySource.transient:
            raise OSError(errno.EIO, "Input/output error")
        lab = np.zeros((h, w), np.int32)
        lab[:, w // 2:] = 1
        return RegionMap(lab, self.vocabulary)


def test_region_failures_are_the_images_reason_and_transient_ones_are_retried(photos, tmp_path):
    out = tmp_path / "c"
    FlakySource.transient = True
    rep = run(photos, out, regions=FlakySource())
    reasons = dict(rep.skipped)
    assert len(reasons) == 2 and rep.n_ok == 5
    assert any("an input failure over two lines" in r for r in reasons.values())
    assert any("Input/output error" in r for r in reasons.values())
    FlakySource.transient = False  # the cause went away
    rep = run(photos, out, regions=FlakySource())
    assert rep.n_ok == 6 and rep.computed["regions"] == 1  # only the transient failure was retried


class BuggySource(FlakySource):
    def segment(self, image: ImageInput) -> RegionMap:
        if image.rgb.shape[0] == 40:
            raise RuntimeError("a bug in a region source")
        return super().segment(image)


def test_unexpected_region_errors_are_reported_and_retried(photos, tmp_path):
    FlakySource.transient = False
    rep = run(photos, tmp_path / "c", regions=BuggySource())
    assert rep.n_ok == 6 and any("a bug in a region source" in r for r in dict(rep.skipped).values())
    rep = run(photos, tmp_path / "c", regions=BuggySource())
    assert rep.computed["regions"] == 1


def test_any_decoder_exception_skips_only_that_image(photos, tmp_path, monkeypatch):
    import semcontrib.engine.workers as workers  # decoding lives there (worker processes without torch)

    real = workers.load_rgb

    def load(path, *a, **k):
        if Path(path).name == "p03.png":
            raise MemoryError("decoder ran out of memory")
        return real(path, *a, **k)

    monkeypatch.setattr(workers, "load_rgb", load)
    rep = run(photos, tmp_path / "c")
    assert rep.n_ok == 6 and "MemoryError" in dict(rep.skipped)[str(photos / "p03.png")]


# --------------------------------------------------------------------------- a corpus from a stranger


def test_hostile_manifest_fields_are_refused(photos, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    m = json.loads((out / "manifest.json").read_text())
    for field, value in [("methods", {"lrp": {"key": "../../../etc"}}), ("heads", []),
                         ("regions", {"name": "../x", "key": "0" * 16, "vocabulary": []})]:
        bad = {**m, field: value}
        (out / "manifest.json").write_text(json.dumps(bad))
        with pytest.raises(CorpusError, match="malformed manifest"):
            Corpus.open(out)


def test_display_files_are_served_only_from_inside_the_store(photos, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    c = Corpus.open(out)
    image_id = c.image_ids()[0]
    assert c.display_jpeg(image_id)[:2] == b"\xff\xd8"  # a JPEG
    target = c.paths.images(c.chunk_of(image_id))
    secret = tmp_path / "secret.npz"
    secret.write_bytes(target.read_bytes())
    target.unlink()
    target.symlink_to(secret)
    assert c.display_jpeg(image_id) is None
    assert c.display_jpeg("../../secret") is None and c.display_jpeg(c.image_ids()[1] + "x") is None


def test_oversized_arrays_are_refused_before_loading(tmp_path):
    path = tmp_path / "big.npz"
    np.savez_compressed(path, a=np.zeros((1024, 1024), np.float64))  # 8 MB, compresses to a few KB
    with pytest.raises(CorpusError, match="over the"):
        cstore.read_npz(path, max_array_bytes=1 << 20)
    assert cstore.read_npz(path)["a"].shape == (1024, 1024)


# --------------------------------------------------------------------------- spreadsheet-safe exports


class FormulaNames:
    name = "formulas"
    vocabulary = ("=HYPERLINK(\"http://x\")", "@SUM(A1)", "+1", "-cmd", "\tTAB", "plain")
    params: dict[str, Any] = {}

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        lab = (np.arange(w)[None, :] * 6 // w).repeat(h, 0).astype(np.int32)
        return RegionMap(lab, self.vocabulary)


def test_csv_exports_cannot_start_a_formula(photos, tmp_path):
    out = tmp_path / "c"
    run(photos, out, regions=FormulaNames(), methods=["gradcam"])
    c = Corpus.open(out)
    for wide in (False, True):
        export_table(c, tmp_path / "x.csv", wide=wide)
        text = (tmp_path / "x.csv").read_text()
        import csv

        rows = list(csv.reader(text.splitlines()))
        for cell in (cell for row in rows for cell in row):
            try:
                float(cell)
                continue  # numbers stay numbers
            except ValueError:
                assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell
    export_table(c, tmp_path / "x.parquet", wide=True)
    assert "=HYPERLINK(\"http://x\")" in pd.read_parquet(tmp_path / "x.parquet").columns  # raw in Parquet


def test_spreadsheet_safe_keeps_numbers():
    df = pd.DataFrame({"=a": ["=1+1", "ok", "-x"], "n": [-1.5, 2.0, -3.0]})
    safe = spreadsheet_safe(df)
    assert list(safe.columns) == ["'=a", "n"] and safe["n"].tolist() == [-1.5, 2.0, -3.0]
    assert safe["'=a"].tolist() == ["'=1+1", "ok", "'-x"]


def test_links_in_a_corpus_are_never_followed(photos, clean, tmp_path):
    out = tmp_path / "c"
    run(photos, out)
    c = Corpus.open(out)
    image_id = c.image_ids()[0]
    chunk = c.chunk_of(image_id)
    work = c.paths.attr("gradcam", c.manifest["methods"]["gradcam"]["key"], chunk)
    outside = tmp_path / "outside.npz"
    outside.write_bytes(work.read_bytes())
    work.unlink()
    work.symlink_to(outside)
    assert c.attribution_map(image_id, "task_a", "gradcam") is None and work.is_symlink()  # a reader changes nothing
    part = Path(out / c.parts[0].file)
    part_copy = tmp_path / "outside.parquet"
    part_copy.write_bytes(part.read_bytes())
    part.unlink()
    part.symlink_to(part_copy)
    with pytest.raises(CorpusError, match="outside the corpus"):
        Corpus.open(out)
    rep = run(photos, out)  # the next run treats both as damaged and rebuilds them
    assert str(work) in rep.discarded and not work.is_symlink()
    assert_same_tables(clean, out)
