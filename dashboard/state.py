"""The saved dashboard state: a JSON file a user downloads and may upload again (or someone gives them).

An uploaded state is untrusted input. :func:`parse_state` bounds it before and while reading it: the text
size (:data:`MAX_STATE_BYTES`), the nesting (a too-deep document is refused, not a ``RecursionError``),
the number of selections (:data:`MAX_SELECTIONS`), of image ids (:data:`MAX_IDS`) and of highlighted
classes; every field is checked by type. Image ids this corpus does not have are dropped and counted;
selection names that the dashboard uses itself (:data:`RESERVED_NAMES`) are refused. Every problem is a
:class:`StateError` (a ``ValueError``) that says what is allowed; nothing else escapes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from semcontrib.dashboard import views
from semcontrib.dashboard.embedding import EMBEDDINGS

STATE_VERSION = 1
MAX_STATE_BYTES = 4_000_000
MAX_SELECTIONS = 50
MAX_IDS = 2_000_000
MAX_ID_LENGTH = 512
MAX_HIGHLIGHT = 1000
MAX_NAME = 80
MAX_WEIGHT = 1e6
RESERVED_NAMES = ("filtered", "filtered set", "all", "lasso")
BASES = ("mean", "sum")


class StateError(ValueError):
    """A saved state that cannot be loaded; the message says why and what is allowed."""


@dataclass(frozen=True)
class Context:
    """What a state is checked against: this corpus's heads, methods, normalisations, regions and ids.

    Attributes
    ----------
    heads : head -> class names.
    methods, normalisations, vocabulary : allowed names.
    index : image id -> corpus row (the ids a selection may hold).
    """

    heads: Mapping[str, Sequence[str]]
    methods: Sequence[str]
    normalisations: Sequence[str]
    vocabulary: Sequence[str]
    index: Mapping[str, int]


@dataclass(frozen=True)
class DashboardState:
    """What a saved dashboard state restores.

    Attributes
    ----------
    head, method, normalisation, basis, algorithm : the view and the embedding.
    highlight : predicted classes to highlight.
    filters : score column -> [low, high] in percent.
    weights : region -> weight.
    selections : the named selections, each ``{id, name, colour, members, n}`` (members: see
        :func:`views.encode_members`).
    dropped_ids : image ids of the file that this corpus does not have (left out).
    """

    head: str
    method: str
    normalisation: str
    basis: str
    algorithm: str
    highlight: tuple[str, ...]
    filters: dict[str, list[float]]
    weights: dict[str, float]
    selections: tuple[dict[str, Any], ...]
    dropped_ids: int = 0
    colour: str = "selection"

    def to_json(self, ids: np.ndarray) -> str:
        """The state as JSON; selections are written as image ids (``ids``: object (N,) corpus ids)."""
        sels = [{"id": s["id"], "name": s["name"], "colour": s["colour"],
                 "image_ids": [str(i) for i in ids[views.decode_members(s["members"], len(ids))]]}
                for s in self.selections]
        return json.dumps({"version": STATE_VERSION, "head": self.head, "method": self.method,
                           "normalisation": self.normalisation, "basis": self.basis, "algorithm": self.algorithm,
                           "highlight": list(self.highlight), "filters": self.filters,
                           "weights": self.weights, "colour": self.colour, "selections": sels}, indent=1)


def score_columns(vocabulary: Sequence[str]) -> set[str]:
    """Every score column a filter may name: ``REGION``, ``REGION+`` and ``REGION-``."""
    return {*vocabulary, *(f"{r}+" for r in vocabulary), *(f"{r}-" for r in vocabulary)}


def _name(obj: Mapping[str, Any], key: str, allowed: Sequence[str], default: str | None = None) -> str:
    value = obj.get(key, default)
    if not isinstance(value, str) or value not in allowed:
        raise StateError(f"{key} must be one of {list(allowed)}, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise StateError(f"{what} must be a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise StateError(f"{what} must be finite, got {value!r}")
    return f


def _filters(raw: Any, vocabulary: Sequence[str]) -> dict[str, list[float]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StateError(f"filters must be an object {{column: [low, high]}}, got {type(raw).__name__}")
    allowed = score_columns(vocabulary)
    out = {}
    for col, rng in raw.items():
        if col not in allowed:
            raise StateError(f"filter on unknown column {str(col)[:80]!r}; columns are regions, REGION+ or REGION-")
        if not isinstance(rng, list) or len(rng) != 2:
            raise StateError(f"filter {col!r} must be [low, high] in percent")
        lo, hi = _number(rng[0], f"filter {col!r} low"), _number(rng[1], f"filter {col!r} high")
        if lo > hi:
            raise StateError(f"filter {col!r}: low {lo} is above high {hi}")
        out[col] = [lo, hi]
    return out


def _weights(raw: Any, vocabulary: Sequence[str]) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise StateError(f"weights must be an object {{region: weight}}, got {type(raw).__name__}")
    out = {}
    for region, w in raw.items():
        if region not in vocabulary:
            raise StateError(f"weight of unknown region {str(region)[:80]!r}; regions are {list(vocabulary)}")
        f = _number(w, f"weight of {region!r}")
        if not 0 <= f <= MAX_WEIGHT:
            raise StateError(f"weight of {region!r} must lie in [0, {MAX_WEIGHT:g}], got {f}")
        out[region] = f
    return out


def _selections(raw: Any, index: Mapping[str, int]) -> tuple[list[dict[str, Any]], int]:
    if raw is None:
        return [], 0
    if not isinstance(raw, list):
        raise StateError(f"selections must be a list, got {type(raw).__name__}")
    if len(raw) > MAX_SELECTIONS:
        raise StateError(f"at most {MAX_SELECTIONS} selections, the file has {len(raw)}")
    n_ids = sum(len(s["image_ids"]) for s in raw if isinstance(s, dict) and isinstance(s.get("image_ids"), list))
    if n_ids > MAX_IDS:
        raise StateError(f"at most {MAX_IDS} image ids in all selections, the file has {n_ids}")
    out: list[dict[str, Any]] = []
    dropped = 0
    n = len(index)
    for s in raw:
        if not (isinstance(s, dict) and isinstance(s.get("name"), str) and isinstance(s.get("image_ids"), list)):
            raise StateError("each selection must be an object with a name (text) and image_ids (a list of text)")
        name = s["name"].strip()[:MAX_NAME]
        if name.lower() in RESERVED_NAMES or str(s.get("id", "")).lower() in RESERVED_NAMES:
            raise StateError(f"selection name {name!r} is reserved; reserved names are {list(RESERVED_NAMES)}")
        rows = []
        for i in s["image_ids"]:
            if not isinstance(i, str) or len(i) > MAX_ID_LENGTH:
                raise StateError(f"image ids must be text of at most {MAX_ID_LENGTH} characters")
            k = index.get(i)
            if k is None:
                dropped += 1
            else:
                rows.append(k)
        mask = np.zeros(n, dtype=bool)
        mask[rows] = True
        colour = s.get("colour") if s.get("colour") in views.PALETTE else None
        out = views.add_selection(out, name, mask, colour)
    return out, dropped


def parse_state(text: str | bytes, context: Context) -> DashboardState:
    """Validate a saved state against this corpus.

    Parameters
    ----------
    text : the file's content (UTF-8 JSON, at most :data:`MAX_STATE_BYTES`).
    context : this corpus's names and ids.

    Raises
    ------
    StateError
        For anything but a well-formed state of this corpus (the message says what is allowed).
    """
    if isinstance(text, bytes):
        if len(text) > MAX_STATE_BYTES:
            raise StateError(f"a state file may be at most {MAX_STATE_BYTES} bytes, this one has {len(text)}")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StateError(f"state is not UTF-8 text: {exc}") from None
    if not isinstance(text, str):
        raise StateError("state must be text")
    if len(text) > MAX_STATE_BYTES:
        raise StateError(f"a state file may be at most {MAX_STATE_BYTES} bytes, this one has {len(text)}")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:  # RecursionError: nesting too deep
        raise StateError(f"state is not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict) or obj.get("version") != STATE_VERSION:
        raise StateError(f"state must be a JSON object with version {STATE_VERSION}")
    head = _name(obj, "head", list(context.heads))
    method = _name(obj, "method", list(context.methods))
    norm = _name(obj, "normalisation", list(context.normalisations))
    basis = _name(obj, "basis", BASES, "mean")
    algorithm = _name(obj, "algorithm", EMBEDDINGS, EMBEDDINGS[0])
    raw_hl = obj.get("highlight") or []
    if not isinstance(raw_hl, list) or len(raw_hl) > MAX_HIGHLIGHT:
        raise StateError(f"highlight must be a list of at most {MAX_HIGHLIGHT} class names")
    classes = set(context.heads[head])
    highlight = tuple(c for c in raw_hl if isinstance(c, str) and c in classes)
    filters = _filters(obj.get("filters"), context.vocabulary)
    weights = _weights(obj.get("weights"), context.vocabulary)
    selections, dropped = _selections(obj.get("selections"), context.index)
    colour = obj.get("colour", "selection")
    if colour not in ("selection", "class", "faithfulness", *(f"score:{c}" for c in score_columns(context.vocabulary))):
        colour = "selection"
    return DashboardState(head, method, norm, basis, algorithm, highlight, filters, weights, tuple(selections),
                          dropped, colour)


# --------------------------------------------------------------------------- the view in the URL

URL_FIELDS = ("head", "method", "normalisation", "basis", "algorithm", "colour")


def url_search(view: Mapping[str, str], algorithm: str, colour: str) -> str:
    """The page address's query string of a view (``?head=…&method=…&…``), so that a view can be
    bookmarked and shared."""
    from urllib.parse import urlencode

    return "?" + urlencode({**{k: view.get(k, "") for k in URL_FIELDS[:4]}, "algorithm": algorithm,
                            "colour": colour})


def parse_url(search: Any, context: Context, columns: Sequence[str] = ()) -> dict[str, str]:
    """The valid view fields of a query string (unknown names and values are ignored, never trusted):
    head, method, normalisation, basis, algorithm, colour (``selection``, ``class``, ``faithfulness`` or
    ``score:COLUMN`` of ``columns``; any score column of the vocabulary when ``columns`` is empty).

    Examples
    --------
    >>> ctx = Context({"nature": ["a"]}, ["lrp"], ["signed_l1"], ["sky"], {})
    >>> parse_url("?head=nature&method=gradcam&algorithm=umap&colour=score:sky", ctx)
    {'head': 'nature', 'algorithm': 'umap', 'colour': 'score:sky'}
    """
    from urllib.parse import parse_qs

    if not isinstance(search, str) or len(search) > 2000:
        return {}
    raw = {k: v[0] for k, v in parse_qs(search.lstrip("?"), max_num_fields=20).items() if v}
    allowed: dict[str, Sequence[str]] = {
        "head": list(context.heads), "method": list(context.methods), "normalisation": list(context.normalisations),
        "basis": BASES, "algorithm": EMBEDDINGS,
        "colour": ["selection", "class", "faithfulness",
                   *(f"score:{c}" for c in (columns or sorted(score_columns(context.vocabulary))))]}
    return {k: raw[k] for k in URL_FIELDS if k in raw and raw[k] in allowed[k]}


# --------------------------------------------------------------------------- the session saved with the corpus


def ids_fingerprint(ids: np.ndarray) -> str:
    """A short hash of the corpus's image ids in order (a session's bit masks are valid only for them)."""
    import hashlib

    return hashlib.sha256("\n".join(map(str, ids)).encode()).hexdigest()[:16]


def session_json(st: DashboardState, ids: np.ndarray) -> str:
    """The session saved with the corpus: the state, with selections as bit masks (one bit per image, so
    a million-image corpus saves quickly) and the fingerprint of the ids they refer to."""
    obj = json.loads(DashboardState(st.head, st.method, st.normalisation, st.basis, st.algorithm, st.highlight,
                                    st.filters, st.weights, (), 0, st.colour).to_json(ids))
    obj["ids"] = ids_fingerprint(ids)
    obj["selections"] = [{k: s[k] for k in ("id", "name", "colour", "members", "n", "kind") if k in s}
                         for s in st.selections]
    return json.dumps(obj)


def parse_session(text: str, context: Context, ids: np.ndarray) -> tuple[DashboardState, str]:
    """(the saved state, a note) from :func:`session_json`'s text. Selections are kept only when the
    corpus still has the same images in the same order (else the note says they were left out); a
    malformed selection is left out. Raises :class:`StateError` like :func:`parse_state`."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise StateError(f"session is not JSON: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise StateError("session must be a JSON object")
    saved = obj.get("selections")
    raw: list[Any] = saved if isinstance(saved, list) else []
    st = parse_state(json.dumps({**obj, "selections": []}), context)
    note = ""
    sels: list[dict[str, Any]] = []
    if raw and obj.get("ids") != ids_fingerprint(ids):
        note = f"{len(raw)} saved selections were left out: the corpus's images changed since"
    else:
        for s, mask in views.selection_masks(raw[:MAX_SELECTIONS], len(ids)):
            name = str(s.get("name") or "").strip()[:MAX_NAME]
            if name.lower() in RESERVED_NAMES:
                continue
            colour = s.get("colour") if s.get("colour") in views.PALETTE else None
            sels = views.add_selection(sels, name, mask, colour)
            if s.get("kind") == "cluster":
                sels[-1]["kind"] = "cluster"
    return (DashboardState(st.head, st.method, st.normalisation, st.basis, st.algorithm, st.highlight, st.filters,
                           st.weights, tuple(sels), 0, st.colour), note)
