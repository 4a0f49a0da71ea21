"""One view, always consistent: which background result may be shown, and when.

A background job (an embedding, suggested clusters and outliers) runs for seconds to minutes while the user
keeps working. Each job is tagged with the view it was computed for (:class:`ViewTag`: head, method,
normalisation, basis, algorithm, region weights); when its result arrives, :func:`decide` compares that tag
with the view the controls show *now*:

* another view (head, method, normalisation, basis or algorithm changed): the result is **dropped** — it
  would show a layout the controls do not describe (the job is also cancelled, see ``callbacks``);
* the same view, but the user has since changed the region weights, or is working on the layout shown (a
  lasso is pending on it): the result is **offered** ("t-SNE ready — show") instead of swapped in under them;
* otherwise it is **applied**.

Everything here is pure: tags in, a decision out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

Decision = Literal["apply", "offer", "drop"]
ALGORITHM_NAMES = {"tsne": "t-SNE", "umap": "UMAP", "pca": "PCA"}


@dataclass(frozen=True)
class ViewTag:
    """The view a result belongs to.

    Attributes
    ----------
    head, method, normalisation, basis : the scores.
    algorithm : the embedding (``tsne``, ``umap``); ``""`` for results that do not depend on it (clusters).
    weights : (region, weight) for every region whose weight is not 1, sorted by region.
    """

    head: str
    method: str
    normalisation: str
    basis: str
    algorithm: str = ""
    weights: tuple[tuple[str, float], ...] = ()

    @classmethod
    def of(cls, view: Mapping[str, Any], algorithm: str = "", weights: Mapping[str, Any] | None = None) -> ViewTag:
        """From a view mapping (head, method, normalisation, basis), an algorithm and region weights (unset,
        malformed or negative weights count as the default 1, as :class:`records.Weights` reads them)."""
        return cls(str(view.get("head")), str(view.get("method")), str(view.get("normalisation")),
                   str(view.get("basis") or "mean"), str(algorithm or ""), normal_weights(weights))

    def to_json(self) -> dict[str, Any]:
        return {"head": self.head, "method": self.method, "normalisation": self.normalisation,
                "basis": self.basis, "algorithm": self.algorithm, "weights": [list(w) for w in self.weights]}

    @classmethod
    def from_json(cls, data: Any) -> ViewTag | None:
        """The tag a store holds, or None when it is missing or malformed (never trusted blindly)."""
        if not isinstance(data, Mapping):
            return None
        try:
            weights = {str(r): w for r, w in data.get("weights") or []}
        except (TypeError, ValueError):
            return None
        return cls.of(data, str(data.get("algorithm") or ""), weights)

    def same_scores(self, other: ViewTag) -> bool:
        """Same head, method, normalisation and basis."""
        return (self.head, self.method, self.normalisation, self.basis) == (
            other.head, other.method, other.normalisation, other.basis)

    @property
    def algorithm_name(self) -> str:
        return ALGORITHM_NAMES.get(self.algorithm, self.algorithm)


def normal_weights(weights: Mapping[str, Any] | None) -> tuple[tuple[str, float], ...]:
    """(region, weight) pairs of the weights that differ from 1, sorted; bad values count as 1.

    Examples
    --------
    >>> normal_weights({"sky": 1, "person": 0, "water": None, "road": "x", "tree": -2})
    (('person', 0.0),)
    """
    out = []
    for region, value in (weights or {}).items():
        try:
            w = 1.0 if value is None or value == "" else float(value)
        except (TypeError, ValueError):
            w = 1.0
        if not math.isfinite(w) or w < 0:
            w = 1.0
        if w != 1.0:
            out.append((str(region), w))
    return tuple(sorted(out))


def decide(result: ViewTag | None, controls: ViewTag, busy: bool = False) -> Decision:
    """What to do with a background result computed for ``result`` when the controls show ``controls``.

    ``busy``: the user is working on the layout shown (a lasso is pending on it).

    Examples
    --------
    >>> t = ViewTag("nature", "lrp", "signed_l1", "mean", "tsne")
    >>> decide(t, t), decide(t, t, busy=True)
    ('apply', 'offer')
    >>> decide(t, ViewTag("nature", "lrp", "signed_l1", "mean", "umap"))
    'drop'
    >>> decide(t, ViewTag("nature", "lrp", "signed_l1", "mean", "tsne", (("sky", 2.0),)))
    'offer'
    """
    if result is None or not result.same_scores(controls) or result.algorithm != controls.algorithm:
        return "drop"
    if result.weights != controls.weights or busy:
        return "offer"
    return "apply"


def decide_clusters(result: ViewTag | None, controls: ViewTag) -> Decision:
    """Clusters (and outliers) are applied only to the scores and weights they were computed for; they do
    not depend on the embedding, so the algorithm is ignored. Never offered: they are kept or dropped."""
    if result is None or not result.same_scores(controls) or result.weights != controls.weights:
        return "drop"
    return "apply"


def lasso_pending(lasso: Any) -> bool:
    """A lasso holding images that have not been cleared (the lasso store: ``{members, n, ...}``)."""
    return isinstance(lasso, Mapping) and isinstance(lasso.get("n"), int) and lasso["n"] > 0


def shown_algorithm(label: str, names: Sequence[str] = tuple(ALGORITHM_NAMES.values())) -> str | None:
    """The algorithm name a scatter title starts with (``"t-SNE of …"``), or None."""
    for name in names:
        if label.startswith(name + " "):
            return name
    return None
