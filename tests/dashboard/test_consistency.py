"""One view, always consistent: the decision on a background result, and the panels that apply it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from semcontrib.dashboard import panels, scatter_panel, views
from semcontrib.dashboard.consistency import ViewTag, decide, decide_clusters, lasso_pending, normal_weights
from semcontrib.dashboard.query import CorpusQuery
from semcontrib.dashboard.records import View, Weights

TSNE = ViewTag("nature", "lrp", "signed_l1", "mean", "tsne")
VIEW = View("nature", "lrp", "signed_l1", "mean")


@pytest.mark.parametrize(("result", "controls", "busy", "expected"), [
    (TSNE, TSNE, False, "apply"),
    (TSNE, TSNE, True, "offer"),  # the user is lassoing on the layout shown
    (TSNE, ViewTag("nature", "lrp", "signed_l1", "mean", "umap"), False, "drop"),  # the algorithm changed back
    (TSNE, ViewTag("biotic", "lrp", "signed_l1", "mean", "tsne"), False, "drop"),
    (TSNE, ViewTag("nature", "ig", "signed_l1", "mean", "tsne"), False, "drop"),
    (TSNE, ViewTag("nature", "lrp", "split", "mean", "tsne"), False, "drop"),
    (TSNE, ViewTag("nature", "lrp", "signed_l1", "sum", "tsne"), True, "drop"),
    (TSNE, ViewTag("nature", "lrp", "signed_l1", "mean", "tsne", (("sky", 2.0),)), False, "offer"),
    (None, TSNE, False, "drop"),
])
def test_decide(result: ViewTag | None, controls: ViewTag, busy: bool, expected: str) -> None:
    assert decide(result, controls, busy) == expected


def test_tags_round_trip_and_read_weights_as_the_weight_boxes_do() -> None:
    tag = ViewTag.of(VIEW.as_dict(), "umap", {"sky": 2, "water": 1, "person": None, "road": "bad"})
    assert tag.weights == (("sky", 2.0),) and tag.algorithm_name == "UMAP"
    assert ViewTag.from_json(tag.to_json()) == tag
    assert ViewTag.from_json("nonsense") is None and ViewTag.from_json({"weights": 5}) is None
    assert normal_weights({"a": 1.0, "b": 0, "c": float("nan")}) == (("b", 0.0),)
    assert decide_clusters(TSNE, ViewTag("nature", "lrp", "signed_l1", "mean", "umap")) == "apply"
    assert decide_clusters(TSNE, ViewTag("nature", "lrp", "signed_l1", "mean", "tsne", (("sky", 0.0),))) == "drop"
    assert lasso_pending({"n": 3, "members": ""}) and not lasso_pending({"n": 0}) and not lasso_pending(None)


def test_arrival_applies_offers_or_drops_by_the_controls(synthetic_corpus: Path) -> None:
    q = CorpusQuery(synthetic_corpus)
    spec, X = q.embedding_spec(VIEW, "tsne", {})
    key = q.quick_embedding(spec, X)  # stands in for a finished job's embedding (known to the query)
    tag = scatter_panel.controls_tag(VIEW, "tsne", Weights())
    result = {"embedding": {"key": key, "label": "t-SNE of …", "ready": True, "view": tag.to_json()},
              "view": tag.to_json()}
    applied = scatter_panel.embedding_arrival(q, result, tag, None)
    assert applied["embedding"]["key"] == key and applied["offered"] is None and "shown" in applied["status"]
    umap = scatter_panel.controls_tag(VIEW, "umap", Weights())
    dropped = scatter_panel.embedding_arrival(q, result, umap, None)
    assert dropped["embedding"] is panels.no_update and "not shown" in dropped["status"]
    lasso = {"members": views.encode_members(np.ones(40, bool)), "n": 40}
    offered = scatter_panel.embedding_arrival(q, result, tag, lasso)
    assert offered["embedding"] is panels.no_update and offered["offered"] == result
    assert offered["offer_text"].startswith("t-SNE ready")
    # 'show' pressed: shown when still this view, else nothing
    assert scatter_panel.show_offer(q, offered["offered"], tag)[0]["key"] == key
    assert scatter_panel.show_offer(q, offered["offered"], umap)[0] is panels.no_update
    # a result whose embedding this server does not know is never shown
    unknown = {**result, "embedding": {**result["embedding"], "key": "nope-nope"}}
    assert scatter_panel.embedding_arrival(q, unknown, tag, None)["embedding"] is panels.no_update


def test_clusters_for_another_view_are_not_added(synthetic_corpus: Path) -> None:
    q = CorpusQuery(synthetic_corpus)
    result = panels.clusters(q, lambda _m: None, {"algorithm": "kmeans", "k": 2}, VIEW, panels.Filters(), Weights())
    sels, _ = panels.apply_clusters(q, result, scatter_panel.controls_tag(VIEW, "", Weights()), [])
    assert [s["kind"] for s in sels[:2]] == ["cluster", "cluster"]
    other = scatter_panel.controls_tag(View("nature", "ig", "signed_l1", "mean"), "", Weights())
    kept, text = panels.apply_clusters(q, result, other, sels)
    assert kept is panels.no_update and "another view" in text
