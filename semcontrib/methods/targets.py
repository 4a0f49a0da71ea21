"""Targets: which class of each head an attribution explains, per image."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from semcontrib.model import MultitaskModel

AMONG_PREFIX = "among:"


def resolve_targets(model: MultitaskModel, logits: dict[str, np.ndarray], heads: Sequence[str],
                    named: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Target class index per head and image.

    Parameters
    ----------
    model : the model (for the heads' class names).
    logits : per head, float (N, n_classes).
    heads : the heads to resolve.
    named : head -> target rule; a head without a rule gets its predicted class. A rule is either
        a class name (that class for every image) or ``among:CLASS,CLASS,...`` (per image, the
        best-scoring class of that set, so that every vector answers the same question even for
        images predicted as something else, as CatViz did with the top cat class).

    Returns
    -------
    dict head -> int64 tensor (N,) of class indices.

    Examples
    --------
    >>> import numpy as np
    >>> from semcontrib.model import HeadSpec
    >>> class M:  # anything with ``head(name).classes``
    ...     def head(self, name): return HeadSpec(name, ("cat", "dog", "car"))
    >>> logits = {"h": np.array([[0.0, 1.0, 9.0], [3.0, 1.0, 9.0]])}
    >>> resolve_targets(M(), logits, ["h"], {"h": "among:cat,dog"})["h"].tolist()
    [1, 0]
    """
    named = dict(named or {})
    unknown = set(named) - set(heads)
    if unknown:
        raise ValueError(f"targets name heads that are not analysed: {sorted(unknown)}")
    out: dict[str, torch.Tensor] = {}
    for h in heads:
        spec = model.head(h)
        scores = np.asarray(logits[h])
        n = scores.shape[0]
        rule = named.get(h)
        if rule is None:
            out[h] = torch.from_numpy(np.argmax(scores, axis=1)).long()
        elif rule.startswith(AMONG_PREFIX):
            idx = class_indices(h, spec.classes, rule[len(AMONG_PREFIX):])
            best = np.asarray(idx)[np.argmax(scores[:, idx], axis=1)]
            out[h] = torch.from_numpy(best).long()
        else:
            out[h] = torch.full((n,), class_indices(h, spec.classes, rule, single=True)[0], dtype=torch.long)
    return out


def class_indices(head: str, classes: Sequence[str], text: str, single: bool = False) -> list[int]:
    """Indices of comma-separated class names (one name when ``single``), validated."""
    names = [text] if single else [c.strip() for c in text.split(",")]
    if not names or any(not c for c in names):
        raise ValueError(f"target for head {head!r}: expected among:CLASS,CLASS,... with non-empty names, "
                         f"got {text!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"target for head {head!r} names a class twice: {text!r}")
    missing = [c for c in names if c not in classes]
    if missing:
        raise ValueError(f"head {head!r} has no class {missing[0]!r}; classes: {list(classes)[:20]}")
    return [list(classes).index(c) for c in names]
