"""What a task output is: :class:`HeadSpec`, a head's name and its class names.

A torch-free module, so that the engine's records (``semcontrib.engine.chunk``) and a rerun with nothing to
compute name heads without importing the model; :mod:`semcontrib.model` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadSpec:
    """One task output: a name and its class names (in logit order).

    Examples
    --------
    >>> HeadSpec("biotic", ("nature", "non_nature")).classes
    ('nature', 'non_nature')
    """

    name: str
    classes: tuple[str, ...]
