"""The stage abstraction: what one step of a chunk's work declares, and the one compute-or-load loop.

A :class:`Stage` declares its name, its store key, the stages whose results it reads, and how it computes,
loads and writes its result. The loop follows CoRelAy's ``Processor.__call__``: a stored stage's result
for this chunk and key is read when it is there and valid for what the state already holds (:func:`load`);
otherwise it is computed from the results it reads and written (:func:`run`). The results travel in one
record, :class:`~semcontrib.engine.chunk.ChunkState` (``results``: stage name -> result), as
segment-anything's ``MaskData`` travels between the steps of its mask generator.

Work that runs elsewhere (region maps in worker processes) returns a :class:`Later` from ``compute``; it is
finished (``write`` then runs) only when a later stage reads its result, so the stages in between (the
model's pixel maps) run meanwhile. A stage without ``load`` stores nothing (decoded pixels, targets); it is
computed only when a stage that must be computed reads it (:func:`wanted`).

Examples
--------
>>> from semcontrib.engine.chunk import ChunkState
>>> calls = []
>>> stages = [Stage("a", compute=lambda s: calls.append("a") or 1),
...           Stage("b", reads=("a",), compute=lambda s: s.results["a"] + 1, load=lambda s: None,
...                 write=lambda s, r: calls.append("write b") or r)]
>>> s = ChunkState(0, [])
>>> load(stages, s)
>>> [st.name for st in wanted(stages, s)]
['a', 'b']
>>> run(stages, s, wanted(stages, s))
>>> s.results["b"], calls
(2, ['a', 'write b'])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from semcontrib.engine.chunk import ChunkState


@dataclass(frozen=True)
class Stage:
    """One step of a chunk's work.

    Attributes
    ----------
    name : unique among a run's stages; the key of its result in ``ChunkState.results``
        (``predictions``, ``regions``, ``attr:gradcam``, ``validity``, ...).
    reads : the stages whose results ``compute`` reads; they come earlier in the list and are finished
        (their pending work collected and written) before it runs.
    compute : ``state -> result`` (or a :class:`Later` for work running elsewhere).
    load : ``state -> the stored result`` for the state's chunk and this stage's key, valid for the results
        the state already holds, or None. Absent: the stage stores nothing and runs only when needed.
    write : ``(state, result) -> what the state keeps`` (the stored form); absent: the result as it is.
    key : the store key of the stage's work files ("" when the path has no key, or nothing is stored).
    group : the distributed stage it runs in (``semcontrib.engine.options.STAGES``), for stored stages.
    path : ``chunk -> the work file`` a stored stage writes (what a rerun checks before reading any).
    """

    name: str
    compute: Callable[[ChunkState], Any]
    reads: tuple[str, ...] = ()
    load: Callable[[ChunkState], Any] | None = None
    write: Callable[[ChunkState, Any], Any] | None = None
    key: str = ""
    group: str = ""
    path: Callable[[int], Path] | None = None

    @property
    def stored(self) -> bool:
        return self.load is not None


@dataclass
class Later:
    """Work started elsewhere: ``finish()`` waits for it and gives the stage's result."""

    finish: Callable[[], Any]


class MissingInput(ValueError):
    """A stage of one group reads a stored result that another group must compute first."""


def load(stages: Sequence[Stage], s: ChunkState) -> None:
    """Read every stored stage's result that is there and valid, in order (each ``load`` sees the results
    loaded before it: a stage whose input is not stored is not loaded either)."""
    for st in stages:
        if st.load is not None:
            got = st.load(s)
            if got is not None:
                s.results[st.name] = got


def wanted(stages: Sequence[Stage], s: ChunkState, group: str | None = None) -> list[Stage]:
    """The stages to compute, in order: stored stages (of ``group``, or all) whose result was not loaded,
    and the stages without a store that those read. ``MissingInput`` when a wanted stage reads a stored
    result that is neither loaded nor computed here (another group's)."""
    want: dict[str, Stage] = {}
    for st in reversed(stages):
        if st.name in s.results:
            continue
        if (st.stored and group in (None, st.group)) or \
                (not st.stored and any(st.name in w.reads for w in want.values())):
            want[st.name] = st
    for w in want.values():
        missing = [r for r in w.reads if r not in s.results and r not in want]
        if missing:
            raise MissingInput(f"chunk {s.chunk}: {w.name} reads {', '.join(missing)}, which is not stored; "
                               f"its stage must run first")
    return [st for st in stages if st.name in want]


def run(stages: Sequence[Stage], s: ChunkState, todo: Sequence[Stage],
        after: Mapping[str, Callable[[], None]] | None = None) -> None:
    """Compute the stages ``todo`` (from :func:`wanted`) in the order of ``stages``, each after finishing
    what it reads, and write each result; ``after[name]()`` is called at the place of stage ``name``
    (once it has started, or been loaded)."""
    names = {st.name for st in todo}
    by_name = {st.name: st for st in stages}
    pending: dict[str, Later] = {}
    for st in stages:
        if st.name in names:
            for r in st.reads:
                if r in pending:
                    _keep(by_name[r], s, pending.pop(r).finish())
            out = st.compute(s)
            if isinstance(out, Later):
                pending[st.name] = out
            else:
                _keep(st, s, out)
        if after and st.name in after:
            after[st.name]()
    for name, later in list(pending.items()):
        _keep(by_name[name], s, later.finish())


def _keep(st: Stage, s: ChunkState, result: Any) -> None:
    s.results[st.name] = st.write(s, result) if st.write is not None else result

