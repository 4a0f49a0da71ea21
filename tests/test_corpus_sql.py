"""The DuckDB SQL of docs/corpus.md, run as written on a small corpus, against Corpus.contribution_table;
the views read the parts the manifest lists (never an orphan part of a killed run)."""

from __future__ import annotations

import re
import shutil
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


def _blocks(language: str, marker: str) -> dict[str, str]:
    """``MARKER NAME`` blocks of docs/corpus.md in ``language``, by name, in document order."""
    out = {}
    for block in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S):
        first = block.splitlines()[0]
        if first.startswith(marker):
            out[first[len(marker):].strip()] = block
    return out


def doc_queries() -> dict[str, str]:
    """``-- query: NAME`` sql blocks of docs/corpus.md, by name, in document order."""
    return _blocks("sql", "-- query:")


def _connect(views: str = "views"):  # type: ignore[no-untyped-def]
    """A DuckDB connection with the doc's views (run in the folder that holds ``corpus/``) and scores macro."""
    connection = duckdb.connect()
    connection.execute(doc_queries()[views])
    connection.execute(doc_queries()["scores_macro"])
    return connection


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
    monkeypatch.chdir(corpus_dir)  # the doc's queries read 'corpus/...'
    connection = _connect()
    yield connection
    connection.close()


def test_doc_has_the_queries():
    names = list(doc_queries())
    for needed in ("views", "views_glob", "stored", "scores_macro", "scores_mean", "scores_sum", "conservation"):
        assert needed in names
    assert names.index("views") < names.index("scores_macro")
    assert len(names) == len(set(names)) and "parts" in _blocks("python", "# example:")


def _sorted(df: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    out = df.sort_values(keys).reset_index(drop=True)
    return out.astype({c: object for c in out.columns if out[c].dtype.name in ("category", "string", "str")})


@pytest.mark.parametrize("views", ["views", "views_glob"])
def test_views_are_the_corpus_tables(corpus_dir, monkeypatch, views):
    """Both ways of opening the tables give Corpus.open's rows, head and method from the folder names."""
    monkeypatch.chdir(corpus_dir)
    corpus = Corpus.open("corpus")
    con = _connect(views)
    for table, keys in (("attributions", KEYS[:3]), ("contributions", KEYS)):
        got = _sorted(con.execute(f"SELECT * FROM {table}").df(), keys)
        ref = _sorted(getattr(corpus, table), keys)
        assert sorted(got.columns) == sorted(ref.columns) and len(got) == len(ref) > 0
        pd.testing.assert_frame_equal(got[list(ref.columns)], ref, check_dtype=False)
    images = con.execute("SELECT image_id, chunk FROM images ORDER BY image_id").df()
    assert len(images) == len(corpus.images) and (images["chunk"] >= -1).all()


def test_the_manifest_views_leave_out_a_part_no_manifest_lists(corpus_dir, tmp_path, monkeypatch):
    """A killed run's part, left in a partition folder: the manifest views leave it out; the glob would not."""
    copy = shutil.copytree(corpus_dir / "corpus", tmp_path / "corpus")
    part = next(p for p in Corpus.open(copy).parts if p.table == "contributions")
    (copy / part.file).with_name("part-" + "f" * 32 + ".parquet").write_bytes((copy / part.file).read_bytes())
    monkeypatch.chdir(tmp_path)
    n = len(Corpus.open(copy).contributions)
    assert _connect("views").execute("SELECT count(*) FROM contributions").fetchone()[0] == n
    assert _connect("views_glob").execute("SELECT count(*) FROM contributions").fetchone()[0] == n + part.rows


def test_the_python_example_reads_the_listed_parts(corpus_dir, monkeypatch):
    monkeypatch.chdir(corpus_dir)
    scope: dict[str, Any] = {}
    exec(_blocks("python", "# example:")["parts"], scope)  # noqa: S102 - our own documentation
    ref = Corpus.open("corpus").contributions
    assert len(scope["df"]) == len(ref) and set(scope["df"]["head"]) == set(ref["head"])


def test_escaped_partition_names_are_decoded(tmp_path, monkeypatch):
    """A head whose name is no folder name (a space, a slash, a percent sign, digits only) is decoded
    back to itself, and stays text."""
    from semcontrib.dashboard.synthetic import write_synthetic_corpus

    heads = {"land use/cover 50%": ["a", "b"], "1": ["x", "y"]}
    write_synthetic_corpus(tmp_path / "corpus", n_images=12, n_maps=0, heads=heads, methods=("lrp",))
    monkeypatch.chdir(tmp_path)
    for views in ("views", "views_glob"):
        got = _connect(views).execute("SELECT head, count(*) AS n FROM attributions GROUP BY head ORDER BY head").df()
        assert got["head"].tolist() == ["1", "land use/cover 50%"] and got["n"].tolist() == [12, 12]


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
    results = {name: con.execute(q).df() for name, q in doc_queries().items()
                if name not in ("views", "views_glob", "scores_macro")}
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
    copy = shutil.copytree(corpus_dir / "corpus", tmp_path / "corpus")
    part = next(p for p in Corpus.open(copy).parts if p.table == "contributions")
    df = pd.read_parquet(copy / part.file)
    df.loc[0, "sum"] += 1.0
    df.to_parquet(copy / part.file, index=False)  # the same file, the same rows: only the number changed
    monkeypatch.chdir(tmp_path)
    bad = _connect().execute(doc_queries()["conservation"]).df()
    assert len(bad) == 1 and bad.iloc[0]["image_id"] == df.loc[0, "image_id"]
    assert (bad.iloc[0]["head"], bad.iloc[0]["method"]) == (part.head, part.method)
