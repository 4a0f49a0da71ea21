"""The analysis run with a tiny model: tables, conservation, bad input, resume, selective recompute, export."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from semcontrib.attribution import AttributionResult, GradCAM
from semcontrib.cli import main
from semcontrib.corpus import Corpus
from semcontrib.pipeline import analyze
from semcontrib.regions import ImageInput, RegionMap
from tests.conftest import tiny_model

FAST = {"ig": {"n_steps": 4}}


class HoleyGrid:
    """Two regions (left, right) and an unassigned border, to exercise the unassigned record."""

    name = "holey"
    vocabulary = ("left", "right", "never")
    params: dict[str, Any] = {}

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        lab = np.full((h, w), -1, np.int32)
        lab[2:-2, 2:w // 2] = 0
        lab[2:-2, w // 2:-2] = 1
        return RegionMap(lab, self.vocabulary)


def run(folder, out, **kw):
    kw.setdefault("model", tiny_model())
    kw.setdefault("method_params", FAST)
    kw.setdefault("batch_size", 3)
    return analyze(folder, out, **kw)


def tables(root):
    c = Corpus.open(root)
    return c.images, c.attributions, c.contributions


def test_tables_conservation_and_skips(image_folder, tmp_path):
    rep = run(image_folder, tmp_path / "c", regions=HoleyGrid())
    assert rep.n_inputs == 9 and rep.n_ok == 7
    reasons = dict((p.split("/")[-1], r) for p, r in rep.skipped)
    assert set(reasons) == {"broken.jpg", "notes.png"}
    assert all("not an image" in r or "unreadable" in r for r in reasons.values())
    c = Corpus.open(tmp_path / "c")
    images, attr, contrib = c.images, c.attributions, c.contributions
    assert len(images) == 9 and (images.status == "ok").sum() == 7
    assert len(attr) == 7 * 2 * 3 and (attr.status == "ok").all()
    assert len(contrib) == 7 * 2 * 3 * 3
    # conservation: region sums + unassigned sum = map total = sum of the stored map
    g = contrib.groupby(["image_id", "head", "method"])["sum"].sum()
    a = attr.set_index(["image_id", "head", "method"])
    np.testing.assert_allclose(g + a.loc[g.index, "unassigned_sum"], a.loc[g.index, "total"], rtol=1e-9, atol=1e-9)
    assert (a.unassigned_n > 0).all()
    row = attr.iloc[0]
    m = c.attribution_map(row["image_id"], row["head"], row["method"])
    assert m.shape == (32, 32) and np.isclose(m.sum(), row["total"], rtol=1e-9)
    # a region absent everywhere scores 0 and is marked absent; |scores| sum to 1
    never = contrib[contrib.region == "never"]
    assert never.absent.all() and (never.score_signed_l1 == 0).all()
    l1 = contrib.groupby(["image_id", "head", "method"])["score_signed_l1"].apply(lambda s: s.abs().sum())
    np.testing.assert_allclose(l1, 1.0)
    # IG keeps its convergence delta; other methods have none
    assert attr[attr.method == "ig"].delta.notna().all() and attr[attr.method != "ig"].delta.isna().all()
    # predictions per head in the image table
    ok = images[images.status == "ok"]
    assert ok.pred_task_a.isin(["no", "yes"]).all() and ok.prob_task_b.between(1 / 3, 1).all()


def test_resume_after_a_crash_gives_identical_tables(image_folder, tmp_path):
    run(image_folder, tmp_path / "full", regions="grid")
    calls = []

    def crash_after_first_chunk(done, total):
        calls.append(done)
        if len(calls) == 1:
            raise KeyboardInterrupt("killed")

    with pytest.raises(KeyboardInterrupt):
        run(image_folder, tmp_path / "resumed", regions="grid", progress=crash_after_first_chunk)
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    rep = run(image_folder, tmp_path / "resumed", regions="grid")
    assert rep.computed["predictions"] == 5  # the first chunk (broken.jpg, img00, img01) was kept
    for t_full, t_res in zip(tables(tmp_path / "full"), tables(tmp_path / "resumed")):
        pd.testing.assert_frame_equal(t_full.drop(columns=["path"], errors="ignore"),
                                      t_res.drop(columns=["path"], errors="ignore"))


def test_partially_written_chunk_is_recomputed_whole(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions="grid")
    before = tables(out)
    victim = sorted((out / "store" / "attr").glob("lrp-*/*.npz"))[4]
    victim.unlink()
    rep = run(image_folder, out, regions="grid")
    assert rep.computed["attr:lrp"] == 3 and rep.computed["attr:ig"] == 0 and rep.computed["predictions"] == 0
    for a, b in zip(before, tables(out)):
        pd.testing.assert_frame_equal(a, b)


def test_changed_parameter_recomputes_only_what_it_affects(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions="grid")
    rep = run(image_folder, out, regions="grid", method_params={"ig": {"n_steps": 6}})
    assert rep.computed == {"predictions": 0, "attr:lrp": 0, "attr:gradcam": 0, "attr:ig": 7, "regions": 0}
    rep = run(image_folder, out, regions="grid:2x2", method_params={"ig": {"n_steps": 6}})
    assert rep.computed == {"predictions": 0, "attr:lrp": 0, "attr:gradcam": 0, "attr:ig": 0, "regions": 7}
    c = Corpus.open(out)
    assert c.vocabulary == ["r0c0", "r0c1", "r1c0", "r1c1"] and c.manifest["methods"]["ig"]["params"]["n_steps"] == 6


def test_nonfinite_maps_are_marked_not_stored(image_folder, tmp_path, monkeypatch):
    original = GradCAM.attribute_batch

    def poisoned(self, model, tensor, targets):
        out = original(self, model, tensor, targets)
        maps = out["task_a"].maps.copy()
        maps[0, 0, 0] = np.nan
        out["task_a"] = AttributionResult(maps)
        return out

    monkeypatch.setattr(GradCAM, "attribute_batch", poisoned)
    run(image_folder, tmp_path / "c", methods=["gradcam"])
    c = Corpus.open(tmp_path / "c")
    bad = c.attributions[c.attributions.status == "nonfinite"]
    assert len(bad) == 3 and (bad["head"] == "task_a").all() and bad.total.isna().all()  # first image per chunk
    assert c.attribution_map(bad.image_id.iloc[0], "task_a", "gradcam") is None
    assert not c.contributions.set_index(["image_id", "head"]).index.isin(
        list(zip(bad.image_id, bad["head"]))).any()


def test_csv_input_with_labels_and_target_class(image_folder, tmp_path):
    csv = tmp_path / "list.csv"
    csv.write_text("path,scene\nimages/img00.png,forest\nimages/img01.png,city\nimages/missing.png,sea\n")
    rep = run(csv, tmp_path / "c", targets={"task_b": "z"}, methods=["gradcam"])
    assert rep.n_ok == 2 and "file not found" in rep.skipped[0][1] or "unreadable" in rep.skipped[0][1]
    c = Corpus.open(tmp_path / "c")
    assert c.images.label_scene.tolist() == ["forest", "city", "sea"]
    assert (c.attributions[c.attributions["head"] == "task_b"].target == "z").all()


def test_export_cli_long_and_wide(image_folder, tmp_path, capsys):
    run(image_folder, tmp_path / "c", regions="grid")
    assert main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "w.csv"), "--wide",
                 "--head", "task_a", "--method", "lrp"]) == 0
    wide = pd.read_csv(tmp_path / "w.csv")
    assert len(wide) == 7 and {"top_left", "bottom_right"} <= set(wide.columns)
    np.testing.assert_allclose(wide[[c for c in wide.columns if "_" in c and c not in
                                     ("image_id",)][-9:]].abs().sum(axis=1), 1.0)
    assert main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "l.parquet"), "--normalisation", "split"]) == 0
    long = pd.read_parquet(tmp_path / "l.parquet")
    assert len(long) == 7 * 2 * 3 * 9 and {"score_pos", "score_neg"} <= set(long.columns)
    assert main(["export", str(tmp_path / "c"), "-o", str(tmp_path / "x.txt")]) == 2
    assert "must end in .csv or .parquet" in capsys.readouterr().err


def test_bad_arguments_rejected(image_folder, tmp_path):
    with pytest.raises(ValueError, match="neither a folder"):
        run(tmp_path / "nowhere", tmp_path / "c")
    with pytest.raises(ValueError, match="unknown head"):
        run(image_folder, tmp_path / "c", heads=["task_z"])
    with pytest.raises(ValueError, match="unknown region source"):
        run(image_folder, tmp_path / "c", regions="voronoi")
    with pytest.raises(ValueError, match="unknown attribution method"):
        run(image_folder, tmp_path / "c", methods=["xrai"])
