"""The DuckDB SQL of docs/corpus.md, run as written on a small corpus, against Corpus.contribution_table."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

duckdb = pytest.importorskip("duckdb")
pytest.importorskip("torch")

from semcontrib.corpus import Corpus  # noqa: E402
from semcontrib.regions import ImageInput, RegionMap  # noqa: E402

from .conftest import synthetic_rgb, tiny_model  # noqa: E402

DOC = Path(__file__).resolve().parents[1] / "docs" / "corpus.md"
KEYS = ["image_id", "head", "method", "region_index"]


def doc_queries() -> dict[str, str]:
    """``-- query: NAME`` sql blocks of docs/corpus.md, by name, in document order."""
    blocks = re.findall(r"```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    out = {}
    for block in blocks:
        first = block.splitlines()[0]
        if first.startswith("-- query:"):
            out[first.split(":", 1)[1].strip()] = block
    return out


class HalvesSource:
    """Left half, right half (with an unassigned border) and a region that never occurs."""

    name = "halves"
    vocabulary = ("left", "right", "never")
    params: dict[str, Any] = {}

    def segment(self, image: ImageInput) -> RegionMap:
        h, w = image.rgb.shape[:2]
        labels = np.zeros((h, w), np.int32)
        labels[:, w // 2:] = 1
        labels[:2, :] = -1
        return RegionMap(labels, self.vocabulary)


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    from PIL import Image

    from semcontrib.pipeline import analyze

    root = tmp_path_factory.mktemp("sql")
    folder = root / "images"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for i in range(5):
        Image.fromarray(synthetic_rgb(rng, 36 + 3 * i, 44)).save(folder / f"p{i}.png")
    (folder / "bad.png").write_text("not an image")
    analyze(folder, root / "corpus", model=tiny_model(seed=3), methods=["gradcam", "ig"], regions=HalvesSource(),
            method_params={"ig": {"n_steps": 8}})
    return root


@pytest.fixture
def con(corpus_dir, monkeypatch):
    monkeypatch.chdir(corpus_dir)  # the doc's queries read 'corpus/*.parquet'
    connection = duckdb.connect()
    connection.execute(doc_queries()["scores_macro"])
    yield connection
    connection.close()


def test_doc_has_the_queries():
    names = list(doc_queries())
    for needed in ("stored", "scores_macro", "scores_mean", "scores_sum", "conservation"):
        assert needed in names
    assert len(names) == len(set(names))


@pytest.mark.parametrize("basis", ["mean", "sum"])
def test_sql_normalisations_match_contribution_table(con, corpus_dir, basis):
    got = con.execute(doc_queries()[f"scores_{basis}"]).df()
    corpus = Corpus.open(corpus_dir / "corpus")
    assert len(got) == len(corpus.contributions) and got["absent"].any()  # the "never" region is absent
    for norm, columns in (("signed_l1", {"score": "signed_l1"}), ("paper", {"score": "paper"}),
                          ("split", {"score_pos": "pos", "score_neg": "neg"})):
        ref = corpus.contribution_table(normalisation=norm, basis=basis).sort_values(KEYS).reset_index(drop=True)
        assert ref[KEYS].equals(got[KEYS])
        for ref_col, sql_col in columns.items():
            np.testing.assert_allclose(got[sql_col].to_numpy(), ref[ref_col].to_numpy(), rtol=0, atol=1e-9)
        assert (got["absent"].to_numpy() == ref["absent"].to_numpy()).all()
        if norm == "paper":
            assert (got["paper_unstable"].to_numpy() == ref["paper_unstable"].to_numpy()).all()


def test_stored_columns_equal_mean_basis_sql(con):
    stored = con.execute(doc_queries()["stored"]).df()
    sql = con.execute(doc_queries()["scores_mean"]).df()
    for a, b in (("score_signed_l1", "signed_l1"), ("score_paper", "paper"), ("score_pos", "pos"),
                 ("score_neg", "neg")):
        np.testing.assert_allclose(stored[a].to_numpy(), sql[b].to_numpy(), rtol=0, atol=1e-9)


def test_every_doc_query_runs(con):
    results = {name: con.execute(q).df() for name, q in doc_queries().items() if name != "scores_macro"}
    assert results["conservation"].empty
    assert results["skipped"]["path"].str.endswith("bad.png").all() and len(results["skipped"]) == 1
    assert set(results["overview"]["images"]) == {5}
    wide = results["wide"]
    assert {"left", "right", "never"} <= set(wide.columns) and len(wide) == 5 * 2 * 2
    assert (wide["never"] == 0).all()
    means = results["mean_by_region"]
    assert "never" not in set(means["region"])


def test_conservation_query_finds_a_broken_row(corpus_dir, tmp_path, monkeypatch):
    """The conservation check can fail: a copy of the corpus with one region sum changed is caught."""
    (tmp_path / "corpus").mkdir()
    for name in ("attributions", "images"):
        (tmp_path / "corpus" / f"{name}.parquet").write_bytes((corpus_dir / "corpus" / f"{name}.parquet").read_bytes())
    df = pd.read_parquet(corpus_dir / "corpus" / "contributions.parquet")
    df.loc[0, "sum"] += 1.0
    df.to_parquet(tmp_path / "corpus" / "contributions.parquet", index=False)
    monkeypatch.chdir(tmp_path)
    bad = duckdb.connect().execute(doc_queries()["conservation"]).df()
    assert len(bad) == 1 and bad.iloc[0]["image_id"] == df.loc[0, "image_id"]
