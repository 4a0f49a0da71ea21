"""The analysis run with a tiny model: tables, conservation, bad input, resume, selective recompute, export."""

from __future__ import annotations

from pathlib import Path
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
    kw.setdefault("chunk_size", 3)
    kw.setdefault("validity", False)
    return analyze(folder, out, **kw)


def tables(root):
    """The three tables, the partitioned ones in one canonical row order (parts come in run order)."""
    c = Corpus.open(root)
    return c.images, canonical(c.attributions), canonical(c.contributions)


def canonical(df):
    keys = [k for k in ("image_id", "head", "method", "region_index") if k in df]
    return df.sort_values(keys, kind="stable").reset_index(drop=True)


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
    # conservation: region sums + unassigned sum = map total (from the full-precision map); the stored
    # display map is within scale / 254 of it at every pixel
    g = contrib.groupby(["image_id", "head", "method"])["sum"].sum()
    a = attr.set_index(["image_id", "head", "method"])
    np.testing.assert_allclose(g + a.loc[g.index, "unassigned_sum"], a.loc[g.index, "total"], rtol=1e-9, atol=1e-9)
    assert (a.unassigned_n > 0).all()
    row = attr.iloc[0]
    m = c.attribution_map(row["image_id"], row["head"], row["method"])
    assert m.shape == (32, 32) and abs(m.sum() - row["total"]) <= 32 * 32 * row["scale"] / 254 + 1e-12
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
    victim = sorted((out / "store" / "attr").glob("lrp-*/*.npz"))[1]  # chunk 1
    victim.unlink()
    rep = run(image_folder, out, regions="grid")
    # the chunk's lrp stage is recomputed whole (same images in the same batches); nothing else
    n_ok = int(((before[0].chunk == 1) & (before[0].status == "ok")).sum())
    assert rep.computed["attr:lrp"] == n_ok == 3 and rep.computed["attr:ig"] == 0 and rep.computed["predictions"] == 0
    assert rep.chunks == (3, 1)
    for a, b in zip(before, tables(out)):
        pd.testing.assert_frame_equal(a, b)


def test_changed_parameter_recomputes_only_what_it_affects(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions="grid")
    rep = run(image_folder, out, regions="grid", method_params={"ig": {"n_steps": 6}})
    assert rep.computed == {"predictions": 0, "attr:lrp": 0, "attr:gradcam": 0, "attr:ig": 7, "regions": 0}
    # other regions: region statistics come from the full-precision maps, which are not stored, so the
    # attributions are computed again; the predictions are kept
    rep = run(image_folder, out, regions="grid:2x2", method_params={"ig": {"n_steps": 6}})
    assert rep.computed == {"predictions": 0, "attr:lrp": 7, "attr:gradcam": 7, "attr:ig": 7, "regions": 7}
    rep = run(image_folder, out, regions="grid:2x2", method_params={"ig": {"n_steps": 6}})
    assert rep.computed == {"predictions": 0, "attr:lrp": 0, "attr:gradcam": 0, "attr:ig": 0, "regions": 0}
    assert not rep.model_loaded
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
    assert rep.n_ok == 2
    skipped = [(Path(p).name, why) for p, why in rep.skipped]
    assert skipped == [("missing.png", "unreadable file: No such file or directory")]
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
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run(tmp_path / "nowhere", tmp_path / "c")
    with pytest.raises(ValueError, match="unknown head"):
        run(image_folder, tmp_path / "c", heads=["task_z"])
    with pytest.raises(ValueError, match="unknown region source"):
        run(image_folder, tmp_path / "c", regions="voronoi")
    with pytest.raises(ValueError, match="unknown attribution method"):
        run(image_folder, tmp_path / "c", methods=["saliency"])


def test_region_methods_store_their_scores_as_region_sums(image_folder, tmp_path):
    import torch

    from semcontrib.attribution import make_method

    out = tmp_path / "c"
    run(image_folder, out, regions="grid:2x2", methods=["occlusion", "shapley"],
        method_params={"occlusion": {"baseline": "mean"}, "shapley": {"baseline": "mean"}})
    c = Corpus.open(out)
    net = tiny_model()
    image_id = c.image_ids()[0]
    rmap = c.region_map(image_id)
    logits = {h: c.logits(image_id, h)[None] for h in net.head_names}
    targets = {h: torch.tensor([int(np.argmax(logits[h]))]) for h in net.head_names}
    row = c.images.set_index("image_id").loc[image_id]
    from semcontrib.imageio import load_rgb, resize_rgb

    tensor = net.preprocess(resize_rgb(load_rgb(row.path).rgb, net.input_size))
    for m in ("occlusion", "shapley"):
        direct = make_method(m, baseline="mean").attribute_regions(net, tensor, targets, rmap.labels[None],
                                                                    tuple(c.vocabulary))
        for h in net.head_names:
            got = c.contributions[(c.contributions.image_id == image_id) & (c.contributions["head"] == h)
                                  & (c.contributions.method == m)].sort_values("region_index")
            # float32 forwards in a batch of 3 vs alone differ in the last bits
            np.testing.assert_allclose(got["sum"].to_numpy(), direct[h].scores[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(got.pos_sum - got.neg_sum, np.abs(got["sum"]), atol=1e-12)
            # the display map paints each region with its score per pixel
            disp = c.attribution_map(image_id, h, m)
            for k in range(4):
                # (int8 display form: within scale / 254 per pixel)
                tol = (rmap.labels == k).sum() * np.abs(disp).max() / 254 * 1.01
                assert disp[rmap.labels == k].sum() == pytest.approx(direct[h].scores[0][k], abs=tol + 1e-4)
    sh = c.attributions[c.attributions.method == "shapley"]
    assert sh.delta.abs().max() < 1e-4  # exact Shapley values: efficiency holds
    for norm in ("signed_l1", "split", "paper"):
        assert len(c.contribution_table("task_a", "shapley", normalisation=norm, wide=True)) == 7


def test_validity_record_for_every_vector(image_folder, tmp_path):
    out = tmp_path / "c"
    rep = run(image_folder, out, regions="grid:2x2", methods=["gradcam", "lrp", "occlusion"], validity=True)
    assert rep.computed["validity"] == 7
    c = Corpus.open(out)
    a = c.attributions
    assert a[["faithfulness", "deletion_auc", "insertion_auc"]].notna().all().all()
    assert a.faithfulness.between(-1, 1).all() and a.deletion_auc.between(0, 1).all()
    assert (a[a.method == "lrp"].lrp_ratio.notna()).all() and a[a.method != "lrp"].lrp_ratio.isna().all()
    # the default deletion (ROAD imputation) is not occlusion's own blur: its record is independent
    assert not a.validity_note.str.startswith("circular").any()
    # judged by its own perturbation, occlusion measures exactly what faithfulness tests, and says so
    out3 = tmp_path / "c3"
    run(image_folder, out3, regions="grid:2x2", methods=["gradcam", "occlusion"], validity=True,
        validity_baseline="blur")
    a3 = Corpus.open(out3).attributions
    assert (a3[a3.method == "occlusion"].faithfulness > 0.999).all()
    assert a3[a3.method == "occlusion"].validity_note.str.startswith("circular: occlusion scores with").all()
    assert not a3[a3.method == "gradcam"].validity_note.str.startswith("circular").any()
    # fewer than 3 regions: NaN with the reason
    out2 = tmp_path / "c2"
    run(image_folder, out2, regions="grid:2x1", methods=["gradcam"], validity=True)
    a2 = Corpus.open(out2).attributions
    assert a2.faithfulness.isna().all() and a2.validity_note.str.contains("fewer than 3").all()
    # nothing changed: nothing recomputed; a new method recomputes the record
    assert run(image_folder, out, regions="grid:2x2", methods=["gradcam", "lrp", "occlusion"],
               validity=True).computed["validity"] == 0
    assert run(image_folder, out, regions="grid:2x2", methods=["gradcam"], validity=True).computed["validity"] == 7


def test_validity_on_a_sample_of_images(image_folder, tmp_path):
    """--validity-sample N: the images of the seeded sample get the values a full record gives them, the
    others NaN with the note; a rerun (with the option or from the recorded settings) computes nothing, and
    the default run's manifest does not name the option (its keys and fingerprint are as before)."""
    from semcontrib.store.manifest import read_manifest
    from semcontrib.validity import NOT_SAMPLED, ValidityConfig

    kw = dict(regions="grid:2x2", methods=["gradcam", "occlusion"], validity=True)
    full, half = tmp_path / "full", tmp_path / "half"
    assert run(image_folder, full, **kw).computed["validity"] == 7
    keys = ["image_id", "head", "method"]
    a_full = Corpus.open(full).attributions.sort_values(keys).reset_index(drop=True)
    sampled = {i for i in a_full.image_id if ValidityConfig(sample=2).in_sample(i)}
    assert 0 < len(sampled) < 7  # the bundled test images give a proper subset
    assert run(image_folder, half, validity_sample=2, **kw).computed["validity"] == len(sampled)
    a_half = Corpus.open(half).attributions.sort_values(keys).reset_index(drop=True)
    inside = a_half.image_id.isin(sampled).to_numpy()
    values = ["faithfulness", "deletion_auc", "lerf_auc", "random_auc", "insertion_auc"]
    np.testing.assert_array_equal(a_half.loc[inside, values].to_numpy(), a_full.loc[inside, values].to_numpy())
    assert (a_half.loc[inside, "validity_note"] == a_full.loc[inside, "validity_note"]).all()
    assert a_half.loc[~inside, values].isna().all().all()
    assert (a_half.loc[~inside, "validity_note"] == NOT_SAMPLED).all()
    assert run(image_folder, half, validity_sample=2, **kw).computed["validity"] == 0
    assert run(image_folder, half, **kw).computed["validity"] == 0  # the recorded sample is kept
    assert read_manifest(half)["settings"]["validity_sample"] == 2
    assert "validity_sample" not in read_manifest(full)["settings"]
    with pytest.raises(ValueError, match="validity sample must be an integer >= 1"):
        run(image_folder, tmp_path / "bad", validity_sample=0, **kw)


# --------------------------------------------------------------------------- scale (issue 11)


def store_files(root):
    return sorted(p for p in (root / "store").rglob("*") if p.is_file())


def test_a_chunk_is_one_file_per_stage_and_the_tables_are_parts_per_head_and_method(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions="grid", methods=["gradcam", "lrp"], chunk_size=4)
    c = Corpus.open(out)
    n_chunks = 3  # 9 inputs in chunks of 4 (the two broken files are planned too, and skipped)
    assert sorted(c.images.chunk.unique()) == [0, 1, 2]
    # images, predictions, regions and one file per method, per chunk; the plan once
    assert len(store_files(out)) == n_chunks * (3 + 2) + 1
    parts = {p.relative_to(out).parts[:3] for p in out.rglob("part-*.parquet") if "store" not in p.parts}
    assert parts == {(t, f"head={h}", f"method={m}") for t in ("attributions", "contributions")
                     for h in ("task_a", "task_b") for m in ("gradcam", "lrp")}
    # a reader of one head and method reads only its folder (hive partitions, as pyarrow reads them)
    one = pd.read_parquet(out / "contributions" / "head=task_a" / "method=lrp")
    want = c.contributions[(c.contributions["head"] == "task_a") & (c.contributions.method == "lrp")]
    assert len(one) == len(want) and set(one.image_id) == set(want.image_id)
    whole = pd.read_parquet(out / "contributions")
    assert len(whole) == len(c.contributions) and set(whole["method"].astype(str)) == {"gradcam", "lrp"}


def test_a_rerun_with_nothing_to_do_loads_no_model_and_writes_nothing(image_folder, tmp_path, monkeypatch):
    import semcontrib.engine.run as engine_run

    loads = []
    monkeypatch.setattr(engine_run, "load_model", lambda name: loads.append(name) or tiny_model())
    out = tmp_path / "c"
    first = run(image_folder, out, model="tiny", regions="grid")
    assert first.model_loaded and loads == ["tiny"]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    rep = run(image_folder, out, model="tiny", regions="grid")
    assert loads == ["tiny"] and not rep.model_loaded and rep.chunks == (3, 0)
    assert set(rep.computed.values()) == {0}
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and "lock" not in p.name} == \
        {p: t for p, t in before.items() if "lock" not in p.name}
    # another parameter needs the model: it is loaded then, once
    rep = run(image_folder, out, model="tiny", regions="grid", method_params={"ig": {"n_steps": 5}})
    assert loads == ["tiny", "tiny"] and rep.computed["attr:ig"] == 7 and rep.computed["attr:lrp"] == 0


def test_adding_images_computes_only_the_new_chunk_and_keeps_the_old_parts(image_folder, tmp_path, rng):
    from PIL import Image

    out = tmp_path / "c"
    run(image_folder, out, regions="grid")
    old_parts = {p.file for p in Corpus.open(out).parts}
    for i in range(2):
        Image.fromarray(synthetic(rng, i)).save(image_folder / f"new{i}.png")
    rep = run(image_folder, out, regions="grid")
    assert rep.computed["predictions"] == 2 and rep.computed["attr:ig"] == 2 and rep.chunks == (4, 1)
    c = Corpus.open(out)
    assert old_parts < {p.file for p in c.parts}  # the old parts are kept as they are
    assert len(c.images) == 11 and (c.images.status == "ok").sum() == 9
    assert set(c.images[c.images.path.str.contains("new")].chunk) == {3}
    # the same results as one run over all the images (other batches: float sums may differ in the last bits)
    fresh = tmp_path / "fresh"
    run(image_folder, fresh, regions="grid")
    for a, b in zip(tables(out)[1:], tables(fresh)[1:]):
        pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=1e-5, atol=1e-7)
    # and removing inputs drops their rows without computing anything
    (image_folder / "new0.png").unlink()
    rep = run(image_folder, out, regions="grid")
    assert set(rep.computed.values()) == {0}, rep.computed
    c = Corpus.open(out)
    assert len(c.images) == 10 and not c.contributions.image_id.str.startswith("new0").any()
    assert c.contributions.image_id.str.startswith("new1").any()


def synthetic(rng, i):
    from tests.conftest import synthetic_rgb

    return synthetic_rgb(rng, 44 + i, 52)


def test_shards_then_one_run_give_the_tables_of_an_uninterrupted_run(image_folder, tmp_path):
    run(image_folder, tmp_path / "whole", regions="grid", validity=True, methods=["gradcam", "occlusion"])
    out = tmp_path / "sharded"
    kw = dict(regions="grid", validity=True, methods=["gradcam", "occlusion"])
    one = run(image_folder, out, shard=(1, 2), **kw)
    assert one.n_ok == -1 and not (out / "manifest.json").exists() and one.chunks == (3, 2)
    assert one.computed["predictions"] == 4  # chunks 0 and 2: (broken, img00, img01) and (img05, img06, notes)
    two = run(image_folder, out, shard=(2, 2), **kw)
    assert two.computed["predictions"] == 3 and two.chunks == (3, 1)
    final = run(image_folder, out, **kw)
    assert set(final.computed.values()) == {0}, final.computed
    assert final.chunks == (3, 3)
    for a, b in zip(tables(tmp_path / "whole"), tables(out)):
        pd.testing.assert_frame_equal(a.drop(columns=["path"], errors="ignore"),
                                      b.drop(columns=["path"], errors="ignore"))
    with pytest.raises(ValueError, match="shard"):
        run(image_folder, out, shard=(3, 2))


def test_worker_processes_give_the_tables_of_the_main_process(image_folder, tmp_path):
    run(image_folder, tmp_path / "w0", regions=HoleyGrid(), methods=["gradcam", "occlusion"], workers=0)
    rep = run(image_folder, tmp_path / "w2", regions=HoleyGrid(), methods=["gradcam", "occlusion"], workers=2)
    assert rep.computed["regions"] == 7
    for a, b in zip(tables(tmp_path / "w0"), tables(tmp_path / "w2")):
        pd.testing.assert_frame_equal(a.drop(columns=["path"], errors="ignore"),
                                      b.drop(columns=["path"], errors="ignore"))


def test_bf16_is_its_own_store_and_close_to_fp32(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions="grid", methods=["gradcam", "lrp"])
    fp32 = tables(out)
    rep = run(image_folder, out, regions="grid", methods=["gradcam", "lrp"], precision="bf16", channels_last=True)
    assert rep.computed["predictions"] == 7 and rep.computed["attr:gradcam"] == 7  # other keys: nothing reused
    bf16 = tables(out)
    a, b = (t.set_index(["image_id", "head", "method", "region_index"]) for t in (fp32[2], bf16[2]))
    diff = (a.score_signed_l1 - b.score_signed_l1).abs().groupby("method").max()
    assert diff["lrp"] < 1e-6  # LRP runs in fp32 whatever the precision (channels-last: float rounding order)
    assert 0 < diff["gradcam"] < 0.05
    assert Corpus.open(out).manifest["model"]["precision"] == "bf16"


def test_a_chunk_without_any_analysable_image(image_folder, tmp_path):
    """Its parts have no rows but the tables' column types, and its empty work files read back."""
    out = tmp_path / "c"
    good = sorted(image_folder.glob("img*.png"))[:3]
    run(good, out, regions="grid", methods=["gradcam"], validity=True)
    junk = tmp_path / "zz.png"
    junk.write_bytes(b"not an image")
    rep = run([*good, junk], out, regions="grid", methods=["gradcam"], validity=True, shard=(1, 1))
    assert rep.chunks == (2, 1)
    rep = run([*good, junk], out, regions="grid", methods=["gradcam"], validity=True)
    assert set(rep.computed.values()) == {0} and rep.discarded == []
    c = Corpus.open(out)  # an empty part concatenates with the others
    assert len(c.images) == 4 and (c.images.status == "ok").sum() == 3
    assert len(c.contributions) == 3 * 2 * 9 and set(c.contributions.image_id) == set(c.image_ids())


class NotedGrid(HoleyGrid):
    """HoleyGrid that notes the two shortest images' maps (as ``faces`` notes "no face found")."""

    name = "noted"

    def segment(self, image: ImageInput) -> RegionMap:
        rmap = super().segment(image)
        return RegionMap(rmap.labels, rmap.names, "nothing to see") if image.rgb.shape[0] < 48 else rmap


def test_a_region_map_note_is_the_image_reason_and_the_image_stays_ok(image_folder, tmp_path):
    out = tmp_path / "c"
    run(image_folder, out, regions=NotedGrid(), methods=["gradcam"])
    for methods in (["gradcam"], ["gradcam", "occlusion"]):  # the second run reads the stored region maps
        if len(methods) > 1:
            rep = run(image_folder, out, regions=NotedGrid(), methods=methods)
            assert rep.computed["attr:occlusion"] == 7 and rep.computed["regions"] == 0
        c = Corpus.open(out)
        ok = c.images[c.images.status == "ok"].set_index("path")
        noted = {Path(p).name for p, r in ok.reason.items() if r}
        assert noted == {"img00.png", "img01.png"} and len(ok) == 7
        assert set(ok.reason[ok.reason != ""]) == {"regions: nothing to see"}
        assert set(c.contributions.image_id) == set(ok.image_id)  # noted images have contributions


def test_a_rerun_with_nothing_to_do_never_imports_torch(image_folder, tmp_path, monkeypatch):
    import subprocess
    import sys
    import textwrap

    import semcontrib.engine.run as engine_run

    monkeypatch.setattr(engine_run, "load_model", lambda name: tiny_model())
    out = tmp_path / "c"
    run(image_folder, out, model="tiny", regions="grid")
    code = textwrap.dedent(f"""
        import sys
        from semcontrib.pipeline import analyze
        rep = analyze({str(image_folder)!r}, {str(out)!r}, model="tiny", regions="grid", method_params={FAST!r},
                      batch_size=3, chunk_size=3, validity=False)
        print(rep.model_loaded, rep.chunks, sorted(m for m in sys.modules if m.split('.')[0] == 'torch')[:3])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.stdout.split() == ["False", "(3,", "0)", "[]"], done.stdout + done.stderr
