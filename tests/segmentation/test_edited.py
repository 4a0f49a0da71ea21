"""The edited source: edits painted over a base source's maps, and an analysis that redoes only what they touch."""

from __future__ import annotations

import numpy as np
import pytest

from semcontrib.corpus import Corpus
from semcontrib.edits import add_edits, make_edit, remove_edits
from semcontrib.regions import ImageInput, RegionError, RegionMap
from semcontrib.segmentation.edited import EditedSource, apply_edits, edited_vocabulary, with_edits
from semcontrib.segmentation.grid import GridSource

pytest.importorskip("torch")
from tests.conftest import tiny_model  # noqa: E402


def edit(label, polygon, image_id="a-0123456789", n=0, width=6, height=4, **kw):
    return make_edit(image_id=image_id, file_name=kw.pop("file_name", "a.png"), width=width, height=height,
                     label=label, polygon=polygon, edit_id=f"{n:032x}", **kw)


def reference_apply(labels, vocabulary, edits):
    """Slow reference: pixel by pixel, centre-in-polygon by ray casting."""
    out = labels.copy()
    for e in edits:
        pts = e.polygon
        for i in range(out.shape[0]):
            for j in range(out.shape[1]):
                x, y, inside = j + 0.5, i + 0.5, False
                for k in range(len(pts)):
                    (x0, y0), (x1, y1) = pts[k - 1], pts[k]
                    if (y0 > y) != (y1 > y) and x < x0 + (y - y0) * (x1 - x0) / (y1 - y0):
                        inside = not inside
                if inside and (e.inside is None or (e.inside in vocabulary
                                                    and out[i, j] == vocabulary.index(e.inside))):
                    out[i, j] = -1 if e.label == "unassigned" else vocabulary.index(e.label)
    return out


def test_edits_paint_in_order_restrict_inside_and_erase():
    lab = np.array([[0, 0, 0, 1, 1, 1],
                    [0, 0, 1, 1, 1, 1],
                    [0, 0, 1, 1, -1, -1],
                    [0, 0, 0, 0, -1, -1]], np.int32)
    voc = ("sky", "animal", "eyes")
    edits = [edit("eyes", [[1, 0], [5, 0], [5, 3], [1, 3]], inside="animal", n=1),   # only animal pixels
             edit("sky", [[2, 0], [4, 0], [4, 1], [2, 1]], n=2),                      # paints over anything
             edit("unassigned", [[3, 3], [6, 3], [6, 4], [3, 4]], n=3),               # erases
             edit("eyes", [[0, 0], [6, 0], [6, 4]], inside="nowhere", n=4)]           # label absent: nothing
    got = apply_edits(lab, voc, edits)
    assert got.tolist() == [[0, 0, 0, 0, 2, 1],
                            [0, 0, 2, 2, 2, 1],
                            [0, 0, 2, 2, -1, -1],
                            [0, 0, 0, -1, -1, -1]]
    assert np.array_equal(got, reference_apply(lab, list(voc), edits))
    assert np.array_equal(lab[0], [0, 0, 0, 1, 1, 1])  # the input is not changed
    rng = np.random.default_rng(0)
    for _ in range(20):  # random polygons against the reference
        poly = rng.uniform(-1, 7, size=(int(rng.integers(3, 8)), 2)).tolist()
        e = edit(str(rng.choice(voc)), poly, inside=rng.choice([None, "animal"]))
        assert np.array_equal(apply_edits(lab, voc, [e]), reference_apply(lab, list(voc), [e]))
    with pytest.raises(ValueError, match="label 'ears' is not in the vocabulary"):
        apply_edits(lab, voc, [edit("ears", [[0, 0], [1, 0], [1, 1]])])


def test_vocabulary_appends_new_labels_after_the_base_ones():
    es = [edit("zebra", [[0, 0], [1, 0], [1, 1]]), edit("ears", [[0, 0], [1, 0], [1, 1]]),
          edit("r0c0", [[0, 0], [1, 0], [1, 1]]), edit("unassigned", [[0, 0], [1, 0], [1, 1]])]
    base = GridSource(rows=1, cols=2)
    assert edited_vocabulary(base.vocabulary, es) == (*base.vocabulary, "ears", "zebra")


def test_source_edits_only_the_matching_image_and_checks_its_size():
    base = GridSource(rows=1, cols=2)
    src = EditedSource(base, [edit("eyes", [[0, 0], [2, 0], [2, 2], [0, 2]], file_name="a.png")])
    rgb = np.zeros((4, 6, 3), np.uint8)
    other = src.segment(ImageInput("b-0123456789", rgb, "/x/b.png"))
    assert other.names == (*base.vocabulary, "eyes")
    assert np.array_equal(other.labels, base.segment(ImageInput("b", rgb)).labels)
    by_name = src.segment(ImageInput("renamed-id", rgb, "/elsewhere/a.png"))  # matched by file name
    assert (by_name.labels[:2, :2] == 2).all() and (by_name.labels[2:, :3] == 0).all()
    assert src.image_identity("b-0123456789", "/x/b.png") == ""
    assert src.image_identity("a-0123456789") != ""
    with pytest.raises(RegionError, match="orientation mismatch"):
        src.segment(ImageInput("a-0123456789", np.zeros((6, 4, 3), np.uint8)))


def test_an_edited_source_needs_torch_exactly_when_its_base_does():
    class TorchBase(GridSource):
        uses_torch = True

    assert EditedSource(GridSource(), []).uses_torch is False
    assert EditedSource(TorchBase(), []).uses_torch is True


def test_an_edited_source_is_cheap_exactly_when_its_base_is():
    class CostlyBase(GridSource):
        cheap = False

    assert EditedSource(GridSource(), []).cheap is True
    assert EditedSource(CostlyBase(), []).cheap is False


def test_with_edits_wraps_only_when_the_corpus_has_edits(tmp_path):
    base = GridSource()
    assert with_edits(base, tmp_path) is base
    add_edits(tmp_path, [edit("eyes", [[0, 0], [2, 0], [2, 2]])])
    wrapped = with_edits(base, tmp_path)
    assert isinstance(wrapped, EditedSource) and with_edits(wrapped, tmp_path) is wrapped
    assert wrapped.cache_identity == base.cache_identity and wrapped.params["edits"]["n_edits"] == 1


# --------------------------------------------------------------------------- through the analysis


def analyse(folder, out):
    return __import__("semcontrib.pipeline", fromlist=["analyze"]).analyze(
        folder, out, model=tiny_model(), regions="grid:2x2", methods=["gradcam"], batch_size=3, chunk_size=3,
        validity=False, workers=0)


def maps(root):
    c = Corpus.open(root)
    return {i: c.region_map(i) for i in c.image_ids()}


def contributions(root):
    c = Corpus.open(root)
    df = c.contributions.sort_values(["image_id", "head", "region_index"]).reset_index(drop=True)
    return df[["image_id", "head", "region", "n_pixels", "sum"]]


def test_an_edit_redoes_only_its_image_and_a_rerun_nothing(image_folder, tmp_path):
    out = tmp_path / "c"
    first = analyse(image_folder, out)
    assert first.computed["regions"] == 7
    before, before_rows = maps(out), contributions(out)
    corpus = Corpus.open(out)
    img = corpus.images.set_index("image_id")
    target = next(i for i in corpus.image_ids() if i.startswith("img03"))  # chunk 1: img02, img03, img04
    w, h = int(img.loc[target, "width"]), int(img.loc[target, "height"])
    box = [[0, 0], [w / 2, 0], [w / 2, h], [0, h]]  # the left half becomes the right cell's label
    e = make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="r0c1", polygon=box)
    add_edits(out, [e])

    second = analyse(image_folder, out)
    assert second.computed["regions"] == 1  # only the edited image is segmented again
    assert second.computed["predictions"] == 0
    assert second.computed["attr:gradcam"] == 1  # its image: the chunk's other attributions are kept
    after = maps(out)
    for i in before:
        changed = not np.array_equal(before[i].labels, after[i].labels)
        assert changed == (i == target), i
    assert after[target].names == before[target].names  # a label the vocabulary has: same vocabulary
    S = after[target].labels.shape[1]
    assert (after[target].labels[:, : S // 2 - 1] == 1).all()
    rows = contributions(out)
    others = rows["image_id"] != target
    assert rows[others].equals(before_rows[before_rows["image_id"] != target])
    assert not rows[~others].reset_index(drop=True).equals(before_rows[~others].reset_index(drop=True))

    third = analyse(image_folder, out)
    assert third.computed == {"predictions": 0, "regions": 0, "attr:gradcam": 0}

    # a new label grows the vocabulary: every vector gains it (zero for the images that lack it, whose stored
    # statistics are kept), only the edited image is attributed again, the base maps are reused, other
    # images' maps and old-region rows are unchanged
    eyes = make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="eyes",
                     polygon=[[0, 0], [w / 3, 0], [w / 3, h / 3], [0, h / 3]], inside="r0c1")
    add_edits(out, [eyes])
    fourth = analyse(image_folder, out)
    assert fourth.computed["regions"] == 1
    assert fourth.computed["attr:gradcam"] == 1
    c = Corpus.open(out)
    assert c.vocabulary == ["r0c0", "r0c1", "r1c0", "r1c1", "eyes"]
    grown = maps(out)
    for i in before:
        if i != target:
            assert np.array_equal(before[i].labels, grown[i].labels), i
    assert (grown[target].labels == 4).any()
    rows = contributions(out)
    old_regions = rows[(rows["image_id"] != target) & (rows["region"] != "eyes")].reset_index(drop=True)
    assert np.allclose(old_regions["sum"], before_rows[before_rows["image_id"] != target]["sum"])
    assert (rows[(rows["region"] == "eyes") & (rows["image_id"] != target)]["n_pixels"] == 0).all()
    assert (rows[(rows["region"] == "eyes") & (rows["image_id"] == target)]["n_pixels"] > 0).all()
    assert analyse(image_folder, out).computed == {"predictions": 0, "regions": 0, "attr:gradcam": 0}

    # removing every edit returns to the base maps, which are still stored: nothing is segmented
    remove_edits(out, [e.edit_id, eyes.edit_id])
    back = analyse(image_folder, out)
    assert back.computed["regions"] == 0
    restored = maps(out)
    assert all(np.array_equal(before[i].labels, restored[i].labels) for i in before)
    assert np.allclose(contributions(out)["sum"], before_rows["sum"])


def test_an_edit_attributes_only_its_image(image_folder, tmp_path):
    out = tmp_path / "c"
    analyse(image_folder, out)
    img = Corpus.open(out).images.set_index("image_id")
    target = next(i for i in img.index if str(i).startswith("img03"))
    w, h = int(img.loc[target, "width"]), int(img.loc[target, "height"])
    add_edits(out, [make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="r0c1",
                              polygon=[[0, 0], [w / 2, 0], [w / 2, h], [0, h]])])
    assert analyse(image_folder, out).computed["attr:gradcam"] == 1


def test_the_same_region_map_as_a_fresh_analysis(image_folder, tmp_path):
    """Edits applied on an existing corpus give what a fresh analysis with the same edits gives."""
    a, b = tmp_path / "a", tmp_path / "b"
    analyse(image_folder, a)
    target = next(i for i in Corpus.open(a).image_ids() if i.startswith("img05"))
    img = Corpus.open(a).images.set_index("image_id")
    w, h = int(img.loc[target, "width"]), int(img.loc[target, "height"])
    e = make_edit(image_id=target, file_name="img05.png", width=w, height=h, label="cat",
                  polygon=[[5, 5], [w - 5, 8], [w / 2, h - 3]])
    add_edits(a, [e])
    add_edits(b, [e])
    analyse(image_folder, a)
    analyse(image_folder, b)
    ma, mb = maps(a), maps(b)
    assert ma.keys() == mb.keys() and all(np.array_equal(ma[i].labels, mb[i].labels) for i in ma)
    assert np.allclose(contributions(a)["sum"], contributions(b)["sum"])
    assert isinstance(ma[target], RegionMap) and "cat" in ma[target].names


def test_an_edit_keeps_the_other_images_attributions_and_validity_as_a_fresh_analysis_computes_them(
        image_folder, tmp_path):
    """A pixel method, a region method and the validity record: the edited image's work is computed, the
    rest of its chunk is kept, and the tables equal a fresh analysis with the same edit; a new label keeps
    the pixel method's other images (their statistics gain a zero row) and recomputes the rest."""
    kw = dict(model=tiny_model(), regions="grid:2x2", methods=["gradcam", "occlusion"], batch_size=3, chunk_size=3,
              validity=True, workers=0)
    analyze = __import__("semcontrib.pipeline", fromlist=["analyze"]).analyze
    a, b = tmp_path / "a", tmp_path / "b"
    analyze(image_folder, a, **kw)
    img = Corpus.open(a).images.set_index("image_id")
    target = next(i for i in img.index if str(i).startswith("img03"))  # chunk 1 of 3 chunks
    w, h = int(img.loc[target, "width"]), int(img.loc[target, "height"])
    e = make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="r1c1",
                  polygon=[[0, 0], [w / 2, 0], [w / 2, h / 2], [0, h / 2]])
    for root in (a, b):
        add_edits(root, [e])
    rep = analyze(image_folder, a, **kw)
    assert rep.computed == {"predictions": 0, "regions": 1, "attr:gradcam": 1, "attr:occlusion": 1, "validity": 1}
    analyze(image_folder, b, **kw)

    def table(root):
        t = Corpus.open(root).attributions
        return t.sort_values(["image_id", "head", "method"]).reset_index(drop=True)

    ta, tb = table(a), table(b)
    cols = ["total", "unassigned_sum", "faithfulness", "deletion_auc", "insertion_auc", "lerf_auc", "random_auc"]
    assert list(ta["image_id"]) == list(tb["image_id"]) and ta["faithfulness"].notna().any()
    assert np.allclose(ta[cols].to_numpy(float), tb[cols].to_numpy(float), equal_nan=True)
    ca, cb = contributions(a), contributions(b)
    assert ca[["image_id", "region"]].equals(cb[["image_id", "region"]])
    assert np.allclose(ca["sum"], cb["sum"])
    assert analyze(image_folder, a, **kw).computed == dict.fromkeys(rep.computed, 0)

    ears = make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="ears",
                     polygon=[[0, 0], [w / 4, 0], [w / 4, h / 4], [0, h / 4]])
    add_edits(a, [ears])
    grown = analyze(image_folder, a, **kw)
    # the pixel method keeps the 6 unedited images; the region method's scores and the validity record (its
    # key holds the vocabulary) are computed again for all 7
    assert grown.computed == {"predictions": 0, "regions": 1, "attr:gradcam": 1, "attr:occlusion": 7, "validity": 7}
    assert "ears" in Corpus.open(a).vocabulary


def test_work_files_without_image_digests_resume_and_an_edit_redoes_the_chunk(image_folder, tmp_path):
    """A corpus stored before the per-image digests: a rerun computes nothing, and an edit attributes its
    image's whole chunk again (as it did then), with the same result as on a new corpus."""
    out, fresh = tmp_path / "c", tmp_path / "fresh"
    analyse(image_folder, out)
    stripped = 0
    for f in sorted((out / "store").rglob("*.npz")):
        with np.load(f) as z:
            arrays = {k: z[k] for k in z.files}
        if arrays.pop("image_digests", None) is not None:
            np.savez(f, **arrays)
            stripped += 1
    assert stripped == 6  # the regions and gradcam files of 3 chunks
    assert analyse(image_folder, out).computed == {"predictions": 0, "regions": 0, "attr:gradcam": 0}
    target = next(i for i in Corpus.open(out).image_ids() if i.startswith("img03"))
    img = Corpus.open(out).images.set_index("image_id")
    w, h = int(img.loc[target, "width"]), int(img.loc[target, "height"])
    e = make_edit(image_id=target, file_name="img03.png", width=w, height=h, label="r0c1",
                  polygon=[[0, 0], [w / 2, 0], [w / 2, h], [0, h]])
    add_edits(out, [e])
    add_edits(fresh, [e])
    assert analyse(image_folder, out).computed["attr:gradcam"] == 3
    analyse(image_folder, fresh)
    assert np.allclose(contributions(out)["sum"], contributions(fresh)["sum"])
