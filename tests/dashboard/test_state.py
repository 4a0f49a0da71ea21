"""The saved state parser: round trip, every refusal, and property-based fuzzing (hypothesis)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from semcontrib.dashboard import state, views

IDS = np.array(["a", "b", "c", "d"], dtype=object)
CTX = state.Context({"nature": ["nature", "non-nature"]}, ["lrp", "ig"], ("signed_l1", "split"), ["sky", "water"],
                    {str(i): k for k, i in enumerate(IDS)})
GOOD = {"version": 1, "head": "nature", "method": "lrp", "normalisation": "split", "basis": "sum",
        "algorithm": "umap", "highlight": ["nature", "cats"], "filters": {"sky+": [0, 50]}, "weights": {"sky": 2},
        "selections": [{"id": "s1", "name": "x", "colour": views.PALETTE[3], "image_ids": ["a", "c"]}]}


def test_round_trip() -> None:
    st_ = state.parse_state(json.dumps(GOOD), CTX)
    assert (st_.head, st_.basis, st_.algorithm, st_.highlight) == ("nature", "sum", "umap", ("nature",))
    assert st_.filters == {"sky+": [0.0, 50.0]} and st_.weights == {"sky": 2.0}
    assert views.decode_members(st_.selections[0]["members"], 4).tolist() == [True, False, True, False]
    back = state.parse_state(st_.to_json(IDS), CTX)
    assert back == st_


@pytest.mark.parametrize("change, message", [
    ({"filters": []}, "filters must be an object"),  # was an HTTP 500
    ({"filters": {"sky": "all"}}, r"\[low, high\]"),
    ({"filters": {"sky": [0, float("inf")]}}, "finite"),
    ({"filters": {"sky": [5, 1]}}, "above"),
    ({"filters": {"clouds": [0, 1]}}, "unknown column"),
    ({"filters": {"sky": [True, 2]}}, "number"),
    ({"weights": {"sky": -1}}, r"\[0, "),
    ({"weights": []}, "weights must be an object"),
    ({"head": "cats"}, "head must be one of"),
    ({"head": ["nature"]}, "head must be one of"),
    ({"basis": "median"}, "basis must be one of"),
    ({"version": 9}, "version"),
    ({"selections": {}}, "selections must be a list"),
    ({"selections": [{"name": "filtered", "image_ids": []}]}, "reserved"),
    ({"selections": [{"id": "filtered", "name": "mine", "image_ids": []}]}, "reserved"),
    ({"selections": [{"name": "x", "image_ids": [1, 2]}]}, "text"),
    ({"selections": [{"name": "x", "image_ids": ["a" * 600]}]}, "at most"),
    ({"selections": [{"name": 3, "image_ids": []}]}, "name"),
    ({"highlight": "nature"}, "highlight"),
])
def test_each_bad_field_is_refused_with_what_is_allowed(change: dict, message: str) -> None:
    with pytest.raises(state.StateError, match=message):
        state.parse_state(json.dumps({**GOOD, **change}), CTX)


def test_unknown_ids_are_dropped_and_counted() -> None:
    obj = {**GOOD, "selections": [{"name": "x", "image_ids": ["a", "zz", "yy"]}]}
    st_ = state.parse_state(json.dumps(obj), CTX)
    assert st_.dropped_ids == 2 and st_.selections[0]["n"] == 1


def test_caps_refuse_huge_states_quickly() -> None:
    many = json.dumps({**GOOD, "selections": [{}] * 200_000})
    t = time.perf_counter()
    with pytest.raises(state.StateError, match="at most 50 selections"):
        state.parse_state(many, CTX)
    assert time.perf_counter() - t < 2.0  # refused before any selection is built (was ~2 GB on 10k images)
    named = json.dumps({**GOOD, "selections": [{"name": "x", "image_ids": []}] * 200_000})
    with pytest.raises(state.StateError, match="at most 4000000 bytes"):
        state.parse_state(named, CTX)
    with pytest.raises(state.StateError, match="at most"):
        state.parse_state("x" * (state.MAX_STATE_BYTES + 1), CTX)
    with pytest.raises(state.StateError, match="not JSON"):
        state.parse_state("[" * 100_000 + "]" * 100_000, CTX)  # nesting: not a RecursionError
    with pytest.raises(state.StateError, match="UTF-8"):
        state.parse_state(b"\xff\xfe{}", CTX)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner,
                                                                                 max_size=5), max_leaves=40)
FIELDS = st.fixed_dictionaries({}, optional={k: JSON | st.just(v) for k, v in GOOD.items()})


@settings(max_examples=300, deadline=500, suppress_health_check=[HealthCheck.too_slow], database=None)
@given(FIELDS)
def test_fuzz_any_json_object_loads_or_raises_state_error(obj: dict) -> None:
    try:
        text = json.dumps(obj)
    except ValueError:
        return
    try:
        st_ = state.parse_state(text, CTX)
    except state.StateError:
        return
    assert st_.head in CTX.heads and st_.method in CTX.methods and st_.basis in state.BASES
    assert all(np.isfinite(v).all() for v in st_.filters.values())
    assert all(s["name"].lower() not in state.RESERVED_NAMES for s in st_.selections)


@settings(max_examples=300, deadline=500, database=None)  # no example database in the work tree
@given(st.binary(max_size=2000) | st.text(max_size=2000).map(str.encode))
def test_fuzz_any_bytes_load_or_raise_state_error(data: bytes) -> None:
    try:
        state.parse_state(data, CTX)
    except state.StateError:
        pass


def test_session_keeps_selections_as_bit_masks_only_for_the_same_images() -> None:
    st_ = state.parse_state(json.dumps({**GOOD, "colour": "score:sky+"}), CTX)
    assert st_.colour == "score:sky+"
    text = state.session_json(st_, IDS)
    assert "image_ids" not in text and '"members"' in text  # bit masks, whatever the corpus size
    back, note = state.parse_session(text, CTX, IDS)
    assert back == st_ and note == ""
    other = np.array(["a", "b", "c", "e"], dtype=object)  # the corpus's images changed since
    kept, note = state.parse_session(text, CTX, other)
    assert kept.selections == () and kept.filters == st_.filters and "1 saved selections were left out" in note
    with pytest.raises(state.StateError, match="session is not JSON"):
        state.parse_session("{", CTX, IDS)
    assert state.parse_state(json.dumps({**GOOD, "colour": "score:nope"}), CTX).colour == "selection"


def test_the_view_in_the_address_round_trips_and_ignores_anything_else() -> None:
    search = state.url_search({"head": "nature", "method": "ig", "normalisation": "split", "basis": "sum"}, "umap",
                              "score:water-")
    assert search == "?head=nature&method=ig&normalisation=split&basis=sum&algorithm=umap&colour=score%3Awater-"
    assert state.parse_url(search, CTX) == {"head": "nature", "method": "ig", "normalisation": "split",
                                            "basis": "sum", "algorithm": "umap", "colour": "score:water-"}
    assert state.parse_url("?head=cats&method=<script>&colour=score:nope&x=1", CTX) == {}
    assert state.parse_url(None, CTX) == {} and state.parse_url("?" + "a=1&" * 5000, CTX) == {}
