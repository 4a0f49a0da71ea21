"""The dashboard's one reader of the corpus: opening reads no table part; a view reads its one head x method
partition, and its score matrix, validity, target text and trust table equal what the whole tables give."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from semcontrib import corpus as cstore
from semcontrib.contributions import BASES, NORMALISATIONS
from semcontrib.dashboard import views
from semcontrib.dashboard.query import VALIDITY_COLUMNS, CorpusQuery
from semcontrib.dashboard.records import View
from semcontrib.store import reader as store_reader


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[cstore.Part]:
    seen: list[cstore.Part] = []
    real = store_reader.read_part_columns

    def counting(root: Path, part: cstore.Part, columns: tuple[str, ...] | None = None,
                 as_dictionary: tuple[str, ...] = ()) -> pa.Table:
        seen.append(part)
        return real(root, part, columns, as_dictionary)

    monkeypatch.setattr(store_reader, "read_part_columns", counting)
    return seen


def test_a_view_reads_only_its_partition(synthetic_corpus: Path, reads: list[cstore.Part]) -> None:
    q = CorpusQuery(synthetic_corpus)
    assert q.has_validity and reads == []  # the images table only (and the parts' footers)
    view = View("biotic", "ig", "signed_l1", "mean")
    q.table_frame(view)
    q.target_text(view)
    assert reads and {(p.head, p.method) for p in reads} == {("biotic", "ig")}
    assert {p.table for p in reads} == {"contributions", "attributions"}


def test_the_view_equals_the_whole_tables(synthetic_corpus: Path) -> None:
    q = CorpusQuery(synthetic_corpus)
    whole = cstore.Corpus.open(synthetic_corpus)
    for head in q.heads:
        for method in q.methods:
            for normalisation in NORMALISATIONS:
                for basis in BASES:
                    view = View(head, method, normalisation, basis)
                    eager = views.score_matrix(whole.contribution_table(head, method, normalisation, basis,
                                                                        wide=True), list(q.ids), q.vocabulary)
                    assert q.score_columns(view) == eager.columns  # without reading the scores
                    got = q.score_matrix(view)
                    assert got.columns == eager.columns and (got.column_region == eager.column_region).all()
                    np.testing.assert_array_equal(got.values, eager.values)
                    np.testing.assert_array_equal(got.valid, eager.valid)
            attr = whole.attributions
            sub = attr[(attr["head"] == head) & (attr["method"] == method)].set_index("image_id")
            v = q.validity(head, method)
            assert v is not None and list(v["image_id"]) == list(q.ids)
            np.testing.assert_array_equal(v["faithfulness"].to_numpy(),
                                          sub["faithfulness"].reindex(list(q.ids)).to_numpy(np.float64))
    trust = q.trust("signed_l1", "mean")
    cols = ["head", "method", *(c for c in (*VALIDITY_COLUMNS, "validity_note") if c in whole.attributions)]
    vectors = {(h, m): q.score_matrix(View(h, m, "signed_l1", "mean")).values for h in q.heads for m in q.methods}
    pd.testing.assert_frame_equal(trust, views.trust_table(whole.attributions[cols], vectors))


def test_the_export_file_is_the_selection_safe_csv_or_parquet(synthetic_corpus: Path) -> None:
    import io

    q = CorpusQuery(synthetic_corpus)
    view = View("nature", "lrp", "split", "sum")
    ids = [str(i) for i in q.ids[::3]]
    table = q.contribution_table(view, ids)
    got = pd.read_csv(io.BytesIO(q.export_bytes(view, ids)))
    assert list(got.columns) == list(table.columns) and len(got) == len(table) == len(ids) * len(q.vocabulary)
    np.testing.assert_allclose(got["score_pos"].to_numpy(), table["score_pos"].to_numpy(np.float64))
    assert got["image_id"].tolist() == table["image_id"].astype(str).tolist()
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(q.export_bytes(view, ids, wide=True, fmt="parquet"))),
                                  q.contribution_table(view, ids, wide=True))
    with pytest.raises(ValueError, match="export format must be 'csv' or 'parquet'"):
        q.export_bytes(view, ids, fmt="xlsx")


def test_highlight_mask_marks_the_images_of_the_named_classes(synthetic_corpus: Path) -> None:
    q = CorpusQuery(synthetic_corpus)
    head = next(iter(q.heads))
    predictions = np.asarray(q.predictions(head), dtype=object)
    classes = sorted(set(predictions))[:2]
    for wanted in ([classes[0]], classes, [], ["no such class"]):
        mask = q.highlight_mask(head, wanted)
        assert mask.dtype == bool and mask.tolist() == [p in wanted for p in predictions]
    assert q.highlight_mask(head, classes).any() and not q.highlight_mask(head, ["no such class"]).any()
