"""The lazy corpus reader: opening reads the images table and the parts' footers only; a view's scores read
from one partition's columns equal the eager path (the whole table, sorted, ``score_table`` + alignment) for
every normalisation and basis, whatever the order of the images table and of the rows; ``contribution_table``
reads only the partitions and parts it needs and gives the same table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from semcontrib import corpus as cstore
from semcontrib.contributions import BASES, NORMALISATIONS
from semcontrib.corpus import Corpus, CorpusError, score_table
from semcontrib.store import reader as store_reader
from semcontrib.store import view as store_view

KEY = "0123456789abcdef"
HEADS = {"a": ["x", "y"], "b": ["u", "v", "w"]}
METHODS = ("lrp", "gradcam")
VOCAB = ["sky", "sea", "rock"]
CHUNK = 4


def _eager_matrix(corpus: Corpus, head: str, method: str, normalisation: str, basis: str) -> np.ndarray:
    """The scores as the dashboard built them before the lazy view (views.score_matrix on the wide table of
    the whole contributions table), without importing the dashboard."""
    df = corpus.contributions
    wide = score_table(df[(df["head"] == head) & (df["method"] == method)], corpus.vocabulary, normalisation,
                       basis, wide=True)
    columns = [f"{r}+" for r in VOCAB] + [f"{r}-" for r in VOCAB] if normalisation == "split" else VOCAB
    frame = wide.drop_duplicates("image_id").set_index("image_id").reindex(list(corpus.ok_ids()))
    return frame[columns].to_numpy(dtype=np.float64)


def write_corpus(root: Path, *, shuffle_images: bool = False, shuffle_rows: bool = False,
                 categorical: bool = False) -> Path:
    """11 images in 3 chunks (two parts per head x method partition: chunks 0-1 and 2), one skipped image,
    one image of status ok without contributions (its attribution failed), regions absent and all-zero rows;
    text typed as the engine writes it (or as pandas categoricals, as ``dashboard.synthetic`` does)."""
    rng = np.random.default_rng(3)
    ids = [f"img{k:02d}-{k * 7919 % 10**10:010d}" for k in range(11)]
    chunk = [k // CHUNK for k in range(11)]
    images = pd.DataFrame({"image_id": ids + ["broken-0000000000"], "path": [f"/in/{i}.jpg" for i in ids] + ["/b"],
                           "sha256": "0" * 64, "width": 4, "height": 4, "status": ["ok"] * 11 + ["skipped"],
                           "reason": "", "original_mode": "RGB", "chunk": chunk + [-1]})
    if shuffle_images:  # an input order that is not the chunk order (images added in the middle of a listing)
        images = images.iloc[rng.permutation(len(images))].reset_index(drop=True)
    parts = []
    for m in METHODS:
        for h, classes in HEADS.items():
            with_rows = [i for i in ids if i != ids[5]]  # ids[5]: no vector in any view
            for chunks in ([0, 1], [2]):
                members = [i for i in with_rows if ids.index(i) // CHUNK in chunks]
                G, K = len(members), len(VOCAB)
                n_pixels = rng.integers(0, 3, (G, K)) * rng.integers(1, 50, (G, K))
                pos = np.abs(rng.normal(size=(G, K))) * n_pixels
                neg = -np.abs(rng.normal(size=(G, K))) * n_pixels
                if G:
                    pos[0], neg[0] = 0.0, 0.0  # an image with nothing (paper: unstable, scores 0)
                target_index = rng.integers(0, len(classes), G)
                targets = np.asarray(classes, dtype=object)[target_index]
                rows = pd.DataFrame({
                    "image_id": np.repeat(members, K), "target": np.repeat(targets, K),
                    "target_index": np.repeat(target_index, K), "region": VOCAB * G,
                    "region_index": np.tile(np.arange(K), G), "n_pixels": n_pixels.ravel(),
                    "sum": (pos + neg).ravel(), "pos_sum": pos.ravel(), "neg_sum": neg.ravel()})
                cstore.add_default_scores(rows, K)
                if shuffle_rows:
                    rows = rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)
                if categorical:
                    for c in ("image_id", "target", "region"):
                        rows[c] = rows[c].astype("category")
                attributions = pd.DataFrame({"image_id": members, "target": targets, "target_index": target_index,
                                             "faithfulness": rng.uniform(-1, 1, G), "validity_note": ""})
                parts.append(cstore.write_part(root, "attributions", h, m, attributions, key=KEY, chunks=chunks))
                parts.append(cstore.write_part(root, "contributions", h, m, rows, key=KEY, chunks=chunks))
    manifest = cstore.make_manifest(
        model={"name": "m", "key": KEY, "input_size": 8}, heads=HEADS,
        methods={m: {"params": {}, "key": KEY, "notes": "", "level": "pixel"} for m in METHODS},
        regions={"name": "grid", "params": {}, "vocabulary": VOCAB, "key": KEY}, settings={}, extra={})
    cstore.publish(root, images, parts, manifest)
    return root


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, tuple[str, ...] | None]]:
    """Every read of a part's rows by the reader: (file, columns)."""
    seen: list[tuple[str, tuple[str, ...] | None]] = []
    real = store_reader.read_part_columns

    def counting(root: Path, part: cstore.Part, columns: tuple[str, ...] | None = None,
                 as_dictionary: tuple[str, ...] = ()) -> pa.Table:
        seen.append((part.file, None if columns is None else tuple(columns)))
        return real(root, part, columns, as_dictionary)

    monkeypatch.setattr(store_reader, "read_part_columns", counting)
    return seen


def test_opening_reads_the_images_table_and_no_part(tmp_path: Path, reads: list) -> None:
    root = write_corpus(tmp_path / "c")
    c = Corpus.open(root)
    assert len(c.images) == 12 and len(c.parts) == 16
    assert c.heads == list(HEADS) and c.vocabulary == VOCAB and c.chunk_of("img03-0000023757") == 0
    assert "faithfulness" in c.attribution_columns  # from the parts' footers
    assert reads == []
    c.view_scores("b", "gradcam", "signed_l1", "mean")
    parts = {p.file for p in c.parts if (p.table, p.head, p.method) == ("contributions", "b", "gradcam")}
    assert {f for f, _ in reads} == parts and len(reads) == 2
    assert all(cols == ("image_id", "region_index", "n_pixels", "sum") for _, cols in reads)  # no text, no score


@pytest.mark.parametrize("layout", [{}, {"shuffle_images": True}, {"shuffle_rows": True}, {"categorical": True},
                                    {"shuffle_images": True, "categorical": True}])
def test_the_lazy_view_equals_the_eager_path(tmp_path: Path, layout: dict[str, bool]) -> None:
    c = Corpus.open(write_corpus(tmp_path / "c", **layout))
    for h in HEADS:
        for m in METHODS:
            for normalisation in NORMALISATIONS:
                for basis in BASES:
                    got = c.view_scores(h, m, normalisation, basis)
                    want = _eager_matrix(c, h, m, normalisation, basis)
                    assert got.values.shape == (11, 6 if normalisation == "split" else 3)
                    np.testing.assert_array_equal(got.values, want)
                    assert list(got.image_ids) == list(c.ok_ids())
    missing = list(c.ok_ids()).index("img05-0000039595")
    assert np.isnan(c.view_scores("a", "lrp").values[missing]).all()  # no vector: a row of NaN
    assert not np.isnan(np.delete(c.view_scores("a", "lrp").values, missing, axis=0)).any()


def test_the_row_layout_is_checked_before_it_is_trusted() -> None:
    ids = np.array(["i0", "i1"], dtype=object)
    good = pa.table({"image_id": ["i0"] * 3 + ["i1"] * 3, "region_index": [0, 1, 2] * 2,
                     **{c: [1.0] * 6 for c in store_view.RAW_COLUMNS}})
    assert store_view.scores_from_rows(good, 3, ids, "signed_l1", "mean") is not None
    mixed = good.set_column(0, "image_id", pa.array(["i0", "i0", "i1", "i1", "i1", "i0"]))
    regions = good.set_column(1, "region_index", pa.array([0, 2, 1, 0, 1, 2]))
    twice = good.set_column(0, "image_id", pa.array(["i0"] * 6))
    for bad in (mixed, regions, twice, good.slice(0, 5)):
        assert store_view.scores_from_rows(bad, 3, ids, "signed_l1", "mean") is None


@pytest.mark.parametrize("categorical", [False, True])
def test_contribution_table_reads_only_what_it_shows(tmp_path: Path, reads: list, categorical: bool) -> None:
    root = write_corpus(tmp_path / "c", shuffle_images=True, categorical=categorical)
    eager = Corpus.open(root)
    whole = eager.contributions
    reads.clear()
    c = Corpus.open(root)
    wanted = ["img09-0000071271", "img10-0000079190"]  # both in chunk 2
    got = c.contribution_table("a", "lrp", "split", "sum", image_ids=wanted)
    part = [p.file for p in c.parts if (p.table, p.head, p.method) == ("contributions", "a", "lrp")][1]
    assert [f for f, _ in reads] == [part]
    sub = whole[(whole["head"] == "a") & (whole["method"] == "lrp") & whole["image_id"].isin(wanted)]
    # text stored as categoricals: the categories are those of the parts read (the values are the same)
    pd.testing.assert_frame_equal(got, score_table(sub, VOCAB, "split", "sum"), check_categorical=not categorical)
    c.view_scores("a", "lrp", "split")  # keeps the ids and raw statistics it read: exporting reads the rest only
    reads.clear()
    again = c.contribution_table("a", "lrp", "split", "sum", image_ids=wanted)
    pd.testing.assert_frame_equal(again, got)
    assert reads == [(part, ("target", "region", "sum"))]
    for wide in (False, True):
        pd.testing.assert_frame_equal(c.contribution_table(wide=wide, normalisation="paper"),
                                      score_table(whole, VOCAB, "paper", "mean", wide=wide))
        pd.testing.assert_frame_equal(c.contribution_table("b", None, image_ids=["nobody"], wide=wide),
                                      score_table(whole.iloc[:0], VOCAB, wide=wide), check_dtype=False,
                                      check_categorical=not categorical)


def test_attribution_rows_read_one_partition_and_some_columns(tmp_path: Path, reads: list) -> None:
    c = Corpus.open(write_corpus(tmp_path / "c"))
    rows = c.attribution_rows("b", "lrp", ["faithfulness", "not_stored"])
    assert list(rows.columns) == ["image_id", "faithfulness"] and len(rows) == 10
    want = c.attributions[(c.attributions["head"] == "b") & (c.attributions["method"] == "lrp")]
    np.testing.assert_array_equal(rows["faithfulness"].to_numpy(), want["faithfulness"].to_numpy())
    assert reads[0][1] == ("image_id", "faithfulness") and len({f for f, _ in reads[:2]}) == 2


def test_a_part_removed_after_opening_is_reported_not_mixed(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "c")
    c = Corpus.open(root)
    gone = next(p for p in c.parts if (p.table, p.head, p.method) == ("contributions", "a", "gradcam"))
    (root / gone.file).unlink()  # as a later publish or compaction removes the parts it replaced
    with pytest.raises(CorpusError, match="open the corpus again"):
        c.view_scores("a", "gradcam")
    with pytest.raises(CorpusError, match="is damaged|unreadable|rows, the manifest says|gone|outside"):
        Corpus.open(root)
