"""The compute-or-load loop of semcontrib.engine.stage, on stages that record what they do (no model, no disk)."""

from __future__ import annotations

from typing import Any

import pytest

from semcontrib.engine import stage
from semcontrib.engine.chunk import ChunkState
from semcontrib.engine.stage import Later, MissingInput, Stage


class World:
    """A store (stage name -> stored result) and a log of every compute, write and hook call."""

    def __init__(self, stored: dict[str, Any] | None = None) -> None:
        self.stored = dict(stored or {})
        self.log: list[str] = []

    def stored_stage(self, name: str, reads: tuple[str, ...] = (), group: str = "", later: bool = False) -> Stage:
        def compute(s: ChunkState) -> Any:
            self.log.append(f"compute {name}")
            value = [name, *(s.results[r] for r in reads)]
            if later:
                return Later(lambda: self.log.append(f"finish {name}") or value)
            return value

        def write(s: ChunkState, result: Any) -> Any:
            self.log.append(f"write {name}")
            self.stored[name] = result
            return result

        return Stage(name, compute, reads, lambda s: self.stored.get(name), write, key=f"key-{name}", group=group)

    def helper(self, name: str, reads: tuple[str, ...] = ()) -> Stage:
        def compute(s: ChunkState) -> Any:
            self.log.append(f"compute {name}")
            return [name, *(s.results[r] for r in reads)]

        return Stage(name, compute, reads)


def _chunk() -> ChunkState:
    return ChunkState(7, [])


def test_a_stored_result_is_loaded_and_never_computed():
    w = World({"a": ["stored a"]})
    stages = [w.stored_stage("a"), w.stored_stage("b", ("a",))]
    s = _chunk()
    stage.load(stages, s)
    todo = stage.wanted(stages, s)
    assert [st.name for st in todo] == ["b"]
    stage.run(stages, s, todo)
    assert w.log == ["compute b", "write b"]
    assert s.results["b"] == ["b", ["stored a"]]


def test_a_helper_stage_runs_only_when_a_stage_to_compute_reads_it():
    w = World({"b": ["stored b"]})
    stages = [w.helper("pixels"), w.stored_stage("b", ("pixels",)), w.stored_stage("c")]
    s = _chunk()
    stage.load(stages, s)
    assert [st.name for st in stage.wanted(stages, s)] == ["c"]
    w.stored.pop("b")
    s = _chunk()
    stage.load(stages, s)
    assert [st.name for st in stage.wanted(stages, s)] == ["pixels", "b", "c"]


def test_a_later_result_is_finished_only_when_read_so_the_stages_between_overlap_it():
    w = World()
    stages = [w.stored_stage("regions", later=True), w.helper("maps"), w.stored_stage("attr", ("maps", "regions"))]
    s = _chunk()
    stage.load(stages, s)
    stage.run(stages, s, stage.wanted(stages, s), after={"regions": lambda: w.log.append("prefetch")})
    assert w.log == ["compute regions", "prefetch", "compute maps", "finish regions", "write regions",
                     "compute attr", "write attr"]
    assert w.stored["attr"] == ["attr", ["maps"], ["regions"]]


def test_an_unread_later_result_is_finished_at_the_end():
    w = World()
    stages = [w.stored_stage("regions", later=True), w.stored_stage("other")]
    s = _chunk()
    stage.run(stages, s, stage.wanted(stages, s))
    assert w.log == ["compute regions", "compute other", "write other", "finish regions", "write regions"]


def test_a_hook_runs_at_its_stage_place_when_that_stage_is_loaded():
    w = World({"regions": ["stored"]})
    stages = [w.stored_stage("regions"), w.stored_stage("attr", ("regions",))]
    s = _chunk()
    stage.load(stages, s)
    stage.run(stages, s, stage.wanted(stages, s), after={"regions": lambda: w.log.append("prefetch")})
    assert w.log == ["prefetch", "compute attr", "write attr"]


def test_a_load_sees_the_results_loaded_before_it():
    w = World({"a": ["a"], "b": ["b"]})
    a = w.stored_stage("a")
    b = w.stored_stage("b", ("a",))
    b = Stage(b.name, b.compute, b.reads, lambda s: w.stored["b"] if "a" in s.results else None, b.write)
    w.stored.pop("a")
    s = _chunk()
    stage.load([a, b], s)
    assert s.results == {}  # b's stored result is not valid without a stored a
    assert [st.name for st in stage.wanted([a, b], s)] == ["a", "b"]


def test_a_group_computes_its_own_stages_and_refuses_missing_inputs():
    w = World()
    stages = [w.stored_stage("images", group="model"), w.stored_stage("regions", ("images",), group="regions")]
    s = _chunk()
    stage.load(stages, s)
    with pytest.raises(MissingInput, match=r"chunk 7: regions reads images, which is not stored"):
        stage.wanted(stages, s, group="regions")
    model = stage.wanted(stages, s, group="model")
    assert [st.name for st in model] == ["images"]
    stage.run(stages, s, model)
    assert "regions" not in w.stored
    assert [st.name for st in stage.wanted(stages, s, group="regions")] == ["regions"]
