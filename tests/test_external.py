"""Heatmaps computed elsewhere (``--attributions DIR``): aggregated exactly as given, or resampled by the
documented rule; a missing or malformed file is that image's reason for that method only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from semcontrib.contributions import aggregate
from semcontrib.corpus import Corpus
from semcontrib.pipeline import analyze
from semcontrib.regions import nearest_resize
from semcontrib.settings import ExternalAttributions
from tests.conftest import synthetic_rgb, tiny_model

SIZE = 32  # the tiny model's input resolution


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(5):
        Image.fromarray(synthetic_rgb(np.random.default_rng(i), 40, 48)).save(folder / f"ph{i}.png")
    return folder


def _maps(folder: Path, photos: Path, shape=(SIZE, SIZE)) -> dict[str, dict[str, np.ndarray]]:
    folder.mkdir(exist_ok=True)
    out = {}
    for i, p in enumerate(sorted(photos.glob("*.png"))):
        rng = np.random.default_rng(100 + i)
        maps = {"task_a": rng.normal(size=shape).astype(np.float32),
                "task_b": rng.normal(size=shape).astype(np.float32)}
        np.savez(folder / f"{p.stem}.npz", **maps)
        out[p.stem] = maps
    return out


def test_maps_at_model_resolution_are_aggregated_exactly_as_given(photos, tmp_path):
    given = _maps(tmp_path / "maps", photos)
    out = tmp_path / "c"
    analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
            external=ExternalAttributions(str(tmp_path / "maps")))
    c = Corpus.open(out)
    assert c.methods == ["gradcam", "external"]
    ext = c.attributions[c.attributions.method == "external"]
    assert len(ext) == 10 and (ext.status == "ok").all()
    for row in ext.itertuples():
        stem = c.images.set_index("image_id").loc[row.image_id, "path"].rsplit("/", 1)[-1][:-4]
        m = given[stem][row.head]
        assert row.total == pytest.approx(float(m.astype(np.float64).sum()), rel=0, abs=1e-9)
        np.testing.assert_array_equal(c.attribution_map(row.image_id, row.head, "external"), m.astype(np.float64))
        # region sums are the given map's sums over the region map
        rmap = c.region_map(row.image_id)
        stats = aggregate(m.astype(np.float64), rmap.labels, 4)
        got = c.contributions[(c.contributions.image_id == row.image_id) & (c.contributions["head"] == row.head)
                              & (c.contributions.method == "external")].sort_values("region_index")
        np.testing.assert_allclose(got["sum"].to_numpy(), stats.sum, rtol=0, atol=1e-12)
    wide = c.contribution_table("task_a", "external", wide=True)
    assert len(wide) == 5 and np.allclose(wide[c.vocabulary].abs().sum(axis=1), 1.0)


def test_other_sizes_are_resampled_keeping_the_total(photos, tmp_path):
    given = _maps(tmp_path / "maps", photos, shape=(48, 64))
    out = tmp_path / "c"
    analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
            external=ExternalAttributions(str(tmp_path / "maps"), name="mymaps"))
    c = Corpus.open(out)
    ext = c.attributions[c.attributions.method == "mymaps"]
    for row in ext.itertuples():
        stem = c.images.set_index("image_id").loc[row.image_id, "path"].rsplit("/", 1)[-1][:-4]
        m = given[stem][row.head].astype(np.float64)
        # the documented rule: bilinear to SIZE×SIZE, times H·W / SIZE²; a smooth map keeps its total closely
        stored = c.attribution_map(row.image_id, row.head, "mymaps")
        assert stored.shape == (SIZE, SIZE)
        ref = np.asarray(Image.fromarray(m.astype(np.float32), mode="F").resize((SIZE, SIZE), Image.BILINEAR),
                         np.float64) * (48 * 64 / SIZE**2)
        np.testing.assert_allclose(stored, ref, rtol=1e-6, atol=1e-6)
    # a constant map keeps its total exactly
    assert nearest_resize(np.zeros((2, 2), np.int32), (4, 4)).shape == (4, 4)


def test_missing_or_malformed_files_are_reported_per_image(photos, tmp_path):
    _maps(tmp_path / "maps", photos)
    (tmp_path / "maps" / "ph1.npz").unlink()
    np.savez(tmp_path / "maps" / "ph2.npz", task_a=np.zeros((SIZE, SIZE)))  # no task_b
    (tmp_path / "maps" / "ph3.npz").write_bytes(b"garbage")
    np.savez(tmp_path / "maps" / "ph4.npz", task_a=np.full((SIZE, SIZE), np.nan), task_b=np.zeros((SIZE, SIZE)))
    out = tmp_path / "c"
    rep = analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
                  external=ExternalAttributions(str(tmp_path / "maps")))
    assert rep.n_ok == 5  # the images stay analysed by the other methods
    c = Corpus.open(out)
    ext = c.attributions[c.attributions.method == "external"].merge(c.images[["image_id", "path"]])
    status = {Path(p).stem: s for p, s in zip(ext.path, ext.status)}
    assert status["ph0"] == "ok"
    assert "no heatmap file ph1.npz" in status["ph1"]
    assert "no array for head 'task_b'" in status["ph2"]
    assert "not a readable .npz" in status["ph3"]
    assert "NaN" in status["ph4"]
    assert set(c.contributions[c.contributions.method == "external"].image_id) == set(
        ext[ext.status == "ok"].image_id)
    assert (c.attributions[c.attributions.method == "gradcam"].status == "ok").all()
    # a file fixed later is picked up by the next run (keyed by its content), the others are kept
    _maps(tmp_path / "maps", photos)
    rep = analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
                  external=ExternalAttributions(str(tmp_path / "maps")))
    c = Corpus.open(out)
    assert (c.attributions.status == "ok").all()
    assert isinstance(c.contributions, pd.DataFrame)


def test_external_name_must_not_shadow_a_method():
    with pytest.raises(ValueError, match="built-in method"):
        ExternalAttributions("x", name="lrp")
    with pytest.raises(ValueError, match="invalid method name"):
        ExternalAttributions("x", name="../evil")


def test_odd_names_ambiguous_stems_and_a_missing_folder(photos, tmp_path):
    import os

    raw = os.fsencode(photos) + b"/caf\xe9.png"
    Image.fromarray(synthetic_rgb(np.random.default_rng(9), 40, 40)).save(raw.decode("utf-8", "surrogateescape"))
    (photos / "sub").mkdir()
    Image.fromarray(synthetic_rgb(np.random.default_rng(10), 40, 40)).save(photos / "sub" / "ph0.png")
    _maps(tmp_path / "maps", photos)
    out = tmp_path / "c"
    rep = analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
                  external=ExternalAttributions(str(tmp_path / "maps")))
    assert rep.n_ok == 7
    c = Corpus.open(out)
    ext = c.attributions[c.attributions.method == "external"].merge(c.images[["image_id", "path"]])
    status = dict(zip(ext.path, ext.status))
    assert "ambiguous heatmap file ph0.npz" in status[str(photos / "ph0.png")]
    assert "ambiguous heatmap file ph0.npz" in status[str(photos / "sub" / "ph0.png")]
    odd = [s for p, s in status.items() if "\\xe9" in p]
    assert odd == ["ok"]  # its heatmap file has the same undecodable bytes in its name
    os.unlink(os.fsencode(tmp_path / "maps") + b"/caf\xe9.npz")
    analyze(photos, out, model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
            external=ExternalAttributions(str(tmp_path / "maps")))  # a reason quoting the name is stored
    c = Corpus.open(out)
    assert c.attributions.status.str.contains("no heatmap file caf\\udce9.npz", regex=False).sum() == 2
    with pytest.raises(ValueError, match="no such folder"):
        analyze(photos, out, model=tiny_model(), external=ExternalAttributions(str(tmp_path / "nowhere")))


def test_a_changed_heatmap_recomputes_its_validity(photos, tmp_path):
    given = _maps(tmp_path / "maps", photos)
    out = tmp_path / "c"
    kw = dict(model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=True,
              external=ExternalAttributions(str(tmp_path / "maps")))
    analyze(photos, out, **kw)
    before = Corpus.open(out).attributions.set_index(["image_id", "head", "method"])
    np.savez(tmp_path / "maps" / "ph0.npz", **{h: -m for h, m in given["ph0"].items()})
    rep = analyze(photos, out, **kw)
    # only ph0 computes its external heatmaps and validity again (the other images of its chunk are
    # reused image by image), nothing else
    assert int((Corpus.open(out).images.chunk == 0).sum()) > 1  # ph0 shares its chunk
    assert rep.computed["attr:external"] == 1
    assert rep.computed["validity"] == 1
    assert rep.computed["attr:gradcam"] == 0
    after = Corpus.open(out).attributions.set_index(["image_id", "head", "method"])
    changed = after.faithfulness.fillna(9) != before.faithfulness.fillna(9)
    assert set(changed[changed].index.get_level_values("method")) <= {"external"}
    fresh = tmp_path / "fresh"
    analyze(photos, fresh, **kw)
    pd.testing.assert_series_equal(Corpus.open(fresh).attributions.set_index(["image_id", "head", "method"])
                                   .faithfulness, after.faithfulness)


def test_reruns_and_added_inputs_give_what_a_fresh_run_gives(photos, tmp_path):
    """An unreadable input never makes a rerun write; a new input sharing a file stem makes the old one's
    heatmap ambiguous too, as in a fresh run."""
    _maps(tmp_path / "maps", photos)
    (photos / "bad.png").write_bytes(b"not an image")
    out = tmp_path / "c"
    kw = dict(model=tiny_model(), methods=["gradcam"], regions="grid:2x2", validity=False,
              external=ExternalAttributions(str(tmp_path / "maps")))
    analyze(photos, out, **kw)
    generation = Corpus.open(out).manifest["generation"]
    rep = analyze(photos, out, **kw)
    assert rep.chunks[1] == 0 and Corpus.open(out).manifest["generation"] == generation
    (photos / "sub").mkdir()
    Image.fromarray(synthetic_rgb(np.random.default_rng(9), 40, 48)).save(photos / "sub" / "ph0.png")
    analyze(photos, out, **kw)
    fresh = tmp_path / "fresh"
    analyze(photos, fresh, **kw)
    status = [Corpus.open(o).attributions.set_index(["image_id", "head", "method"]).status.sort_index()
              for o in (out, fresh)]
    pd.testing.assert_series_equal(status[0], status[1])
    assert status[0].str.contains("ambiguous").sum() == 4  # two inputs named ph0, two heads
