"""The synthetic corpus: written with the corpus's chunk writers and table parts, readable as a real one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcontrib import corpus as cstore
from semcontrib.contributions import aggregate
from semcontrib.dashboard.synthetic import CHUNK_SIZE, SyntheticSpec, write_synthetic_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> cstore.Corpus:
    """300 images in 3 chunks; maps for the first 150 (all of chunk 0, part of chunk 1), 2 skipped."""
    root = write_synthetic_corpus(tmp_path_factory.mktemp("syn") / "c",
                                  SyntheticSpec(n_images=300, n_maps=150, n_skipped=2, seed=3))
    return cstore.Corpus.open(root)


def test_work_files_are_chunks_and_the_images_table_names_them(corpus: cstore.Corpus) -> None:
    ok = corpus.images[corpus.images["status"] == "ok"]
    assert ok["chunk"].tolist() == [i // CHUNK_SIZE for i in range(300)]
    assert (corpus.images.loc[corpus.images["status"] != "ok", "chunk"] == -1).all()
    paths = corpus.paths
    assert sorted(p.name for p in paths.images(0).parent.iterdir()) == ["000000.npz", "000001.npz"]
    for m in corpus.methods:
        assert paths.attr(m, corpus.manifest["methods"][m]["key"], 1).is_file()
    ids = corpus.image_ids()
    for k in (0, 127, 128, 149):  # with maps
        assert corpus.display_jpeg(ids[k]) is not None and corpus.region_map(ids[k]) is not None
        assert corpus.attribution_map(ids[k], "nature", "lrp") is not None
    for k in (150, 255, 299):  # table rows only: in a chunk with maps, or in a chunk without a file
        assert corpus.display_jpeg(ids[k]) is None and corpus.attribution_map(ids[k], "nature", "lrp") is None


def test_parts_hold_every_chunk_of_one_head_and_method(corpus: cstore.Corpus) -> None:
    parts = corpus.parts
    assert sorted((p.table, p.head, p.method) for p in parts) == sorted(
        (t, h, m) for t in cstore.PARTITIONED for h in corpus.heads for m in corpus.methods)
    assert all(p.chunks == (0, 1, 2) for p in parts)
    assert len(corpus.attributions) == 300 * 2 * 2 and len(corpus.contributions) == 300 * 2 * 2 * 5
    assert (corpus.attributions.groupby(["head", "method"]).size() == 300).all()


def test_tables_conserve_and_the_display_maps_agree_with_them(corpus: cstore.Corpus) -> None:
    """Statistics from the full-precision maps: conservation exact; the stored int8 display map within
    scale / 254 per pixel of them."""
    K = len(corpus.vocabulary)
    c = corpus.contributions.set_index(["image_id", "head", "method"]).sort_values("region_index")
    sums = c.groupby(level=[0, 1, 2], observed=True)["sum"].sum()
    a = corpus.attributions.set_index(["image_id", "head", "method"])
    np.testing.assert_allclose(sums.loc[a.index] + a["unassigned_sum"], a["total"], rtol=1e-9, atol=1e-9)
    ids = corpus.image_ids()
    for image_id in (ids[0], ids[131]):
        labels = corpus.region_map(image_id).labels  # type: ignore[union-attr]
        for head in corpus.heads:
            for method in corpus.methods:
                shown = corpus.attribution_map(image_id, head, method)
                assert shown is not None
                row = a.loc[(image_id, head, method)]
                scale = float(np.abs(shown).max())
                assert row["scale"] == pytest.approx(scale, rel=1e-6)
                regions = c.loc[(image_id, head, method)]
                got = aggregate(shown, labels, K)
                tol = regions["n_pixels"].to_numpy() * scale / 254 * (1 + 1e-6)
                assert (np.abs(got.sum - regions["sum"].to_numpy()) <= tol).all()
                assert (got.sum != regions["sum"].to_numpy()).any()  # int8: the display map is not the truth


def test_the_same_spec_writes_the_same_tables(tmp_path: Path, corpus: cstore.Corpus) -> None:
    again = cstore.Corpus.open(write_synthetic_corpus(tmp_path / "c", SyntheticSpec(n_images=300, n_maps=150,
                                                                                   n_skipped=2, seed=3)))
    for table in ("images", "attributions", "contributions"):
        a, b = getattr(corpus, table), getattr(again, table)
        assert a.astype(str).equals(b.astype(str)), table
