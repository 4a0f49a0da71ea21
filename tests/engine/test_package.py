"""The engine package's lazy names, and :mod:`semcontrib.pipeline` re-exporting them for one release.

The engine lists its names three times for three readers: the ``TYPE_CHECKING`` imports (mypy), ``_HOME``
(the lazy import at run time) and ``__all__`` (``import *``, ruff). These tests keep them one list, and check
that the old import path gives the same objects without a list of its own.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import semcontrib.engine as engine
import semcontrib.pipeline as pipeline

REPO = Path(__file__).resolve().parents[2]


def _type_checking_imports(path: Path) -> dict[str, str]:
    """name -> module of every ``from X import name`` in the module's top-level ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(path.read_text())
    out: dict[str, str] = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom) and stmt.module:
                    out.update({a.asname or a.name: stmt.module for a in stmt.names})
    return out


def test_the_engine_types_its_lazy_names_and_exports_each_once():
    typed = _type_checking_imports(Path(engine.__file__))
    assert sorted(engine.__all__) == engine.__all__ and len(set(engine.__all__)) == len(engine.__all__)
    assert set(engine.__all__) == set(engine._HOME)
    assert {name: f"semcontrib.engine.{module}" for name, module in engine._HOME.items()} == typed


def test_the_pipeline_has_no_list_of_the_engine_names():
    names = _type_checking_imports(Path(pipeline.__file__))
    assert names == {"*": "semcontrib.engine"}
    assert set(engine.__all__) < set(pipeline.__all__)


@pytest.mark.parametrize("name", ["make_plan", "read_inputs", "analyze", "RunOptions", "ChunkImages", "hash_key"])
def test_a_pipeline_name_is_the_engine_object(name):
    assert getattr(pipeline, name) is getattr(engine, name)


@pytest.mark.parametrize(("old", "new"), [("_hash", "hash_key"), ("_typed", "typed_rows"), ("_item", "item_or_none"),
                                          ("_versions", "package_versions"), ("_make_method", "build_method")])
def test_the_old_private_names_are_the_engine_objects(old, new):
    assert old in pipeline.__all__
    assert getattr(pipeline, old) is getattr(engine, new)


def test_the_pipeline_names_outside_the_engine_package():
    from semcontrib import settings
    from semcontrib.engine import workers

    assert pipeline.DEFAULT_METHODS is settings.DEFAULT_METHODS
    assert pipeline.REGION_METHODS is settings.REGION_METHODS
    assert pipeline.path_text is workers.path_text


def test_an_unknown_pipeline_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="module 'semcontrib.pipeline' has no attribute 'nope'"):
        pipeline.nope  # noqa: B018
    with pytest.raises(ImportError, match="cannot import name '_HOME'"):
        exec("from semcontrib.pipeline import _HOME", {})


def test_planning_through_the_old_path_imports_no_torch():
    """What benchmarks/bench_planning.py and bench_million.py run in every tree they compare."""
    code = ("import sys; from semcontrib.pipeline import make_plan, read_inputs; "
            "print(make_plan.__module__, read_inputs.__module__, [m for m in sys.modules if m.startswith('torch')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.split() == ["semcontrib.engine.plan", "semcontrib.engine.inputs", "[]"], out.stdout + out.stderr
