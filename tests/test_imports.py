"""Every module of the package imports on its own, and the package's import graph has no circle.

The graph is built from the source with :mod:`ast`: one edge per module-level ``import`` of another
``semcontrib`` module, counting imports inside top-level ``if``/``try`` blocks, ``if TYPE_CHECKING:``
included (mypy follows those, and a circle through them is still two modules that need each other).
Imports inside functions are not edges: they are how a lower module reaches a higher one lazily.

``ALLOWED_CYCLES`` lists the circles that exist today, each with the change that removes it; a new
circle fails the test, and so does a listed one that is gone (shrink the list when you fix one).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# import name -> folder of the repository (pyproject.toml's package-dir)
ROOTS = {"semcontrib": REPO / "semcontrib", "semcontrib.segmentation": REPO / "segmentation",
         "semcontrib.dashboard": REPO / "dashboard"}

ALLOWED_CYCLES: list[tuple[str, ...]] = []  # none left: keep it so


def module_files() -> dict[str, Path]:
    """Every module of the installed package, by import name."""
    out: dict[str, Path] = {}
    for package, folder in ROOTS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if package == "semcontrib" and parts[0] in ("segmentation", "dashboard"):
                continue  # not folders of semcontrib/ (guard against a stray copy)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            if parts[-1:] == ["__main__"]:
                continue
            out[".".join([package, *parts])] = path
    return out


def _imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The semcontrib modules that the module-level statements of ``path`` import."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    statements: list[ast.AST] = []
    for node in tree.body:
        statements.extend(ast.walk(node) if isinstance(node, (ast.If, ast.Try)) else [node])
    for node in statements:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[:len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:  # `from semcontrib import corpus` imports the module semcontrib.corpus
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[tuple[str, ...]]:
    """The strongly connected components of more than one module (Tarjan), each sorted, in sorted order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[tuple[str, ...]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(tuple(sorted(component)))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def test_cycle_finder_finds_a_circle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [("a", "b", "c")]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_sees_relative_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "p"
    pkg.mkdir()
    (pkg / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from p.b import X\n")
    (pkg / "b.py").write_text("from . import a\ndef f():\n    from p import c\n")
    (pkg / "c.py").write_text("")
    modules = {"p.a": pkg / "a.py", "p.b": pkg / "b.py", "p.c": pkg / "c.py"}
    assert _imported("p.a", pkg / "a.py", modules) == {"p.b"}
    assert _imported("p.b", pkg / "b.py", modules) == {"p.a"}  # the import inside f is no edge


def test_the_package_has_no_new_import_circle():
    graph = import_graph()
    assert {"semcontrib.pipeline", "semcontrib.corpus", "semcontrib.segmentation", "semcontrib.dashboard.app"} <= set(
        graph)
    assert "semcontrib.engine.api" in graph["semcontrib.engine"]  # `from semcontrib.engine.api import ...`
    assert "semcontrib.engine" in graph["semcontrib.pipeline"]  # `from semcontrib import engine as _engine`
    assert "semcontrib.corpus" in graph["semcontrib.engine.run"]  # `from semcontrib import corpus as cstore`
    assert cycles(graph) == sorted(ALLOWED_CYCLES)


def test_the_core_never_imports_the_dashboard():
    graph = import_graph()
    core = [m for m in graph if not m.startswith("semcontrib.dashboard")]
    assert [m for m in core if any(d.startswith("semcontrib.dashboard") for d in graph[m])] == []


# Run in a fresh interpreter: third-party packages are imported once, then each semcontrib module is
# imported in its own forked child, in which no semcontrib module is loaded yet.
_IMPORT_EACH = """
import importlib, os, sys, traceback
for heavy in ("numpy", "pandas", "pyarrow.parquet", "PIL.Image", "scipy", "torch", "torchvision", "plotly", "dash"):
    importlib.import_module(heavy)
assert not [m for m in sys.modules if m.startswith("semcontrib")], "semcontrib loaded before the children"
failed = []
for name in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            importlib.import_module(name)
            code = 0
        except BaseException:
            os.write(write, traceback.format_exc()[-1500:].encode())
            code = 1
        os._exit(code)
    os.close(write)
    with os.fdopen(read) as pipe:
        message = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        failed.append(name + ": " + message)
print("\\n".join(failed))
sys.exit(1 if failed else 0)
"""


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    names = sorted(module_files())
    assert len(names) > 60
    done = subprocess.run([sys.executable, "-c", _IMPORT_EACH, *names], capture_output=True, text=True,
                          timeout=300, cwd=REPO)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]


# What a rerun with nothing to compute imports (issue 22 item 1): none of these may import torch. The engine's
# run (semcontrib.engine.run) is not listed until semcontrib.engine.passes stops importing torch at module level
# (tests/engine/test_run.py checks the whole rerun, API and CLI).
TORCH_FREE = ("semcontrib.cli", "semcontrib.pipeline", "semcontrib.engine", "semcontrib.engine.plan",
              "semcontrib.engine.inputs", "semcontrib.engine.options", "semcontrib.engine.keys",
              "semcontrib.heads", "semcontrib.model", "semcontrib.model.compute", "semcontrib.methods",
              "semcontrib.methods.base", "semcontrib.settings", "semcontrib.regions", "semcontrib.workers",
              "semcontrib.corpus", "semcontrib.validity")
_TORCH_FREE_USE = """
import importlib, sys
for name in sys.argv[1:]:
    importlib.import_module(name)
from semcontrib.model import ComputeOptions, HeadSpec
from semcontrib.methods import AttributionMethod, is_pixel_method
ComputeOptions("cpu", "bf16", True).check_available()  # a CPU run checks its options without torch
HeadSpec("biotic", ("nature", "non_nature"))
print(sorted(m for m in sys.modules if m.split(".")[0] == "torch")[:3])
"""


def test_the_modules_a_rerun_reads_import_without_torch():
    done = subprocess.run([sys.executable, "-c", _TORCH_FREE_USE, *TORCH_FREE], capture_output=True, text=True,
                          timeout=120, cwd=REPO, check=True)
    assert done.stdout.split() == ["[]"], done.stdout + done.stderr


def test_a_torch_name_of_the_model_and_methods_packages_imports_torch_when_asked_for():
    code = ("import sys\nimport semcontrib.model as model, semcontrib.methods as methods\n"
            "assert 'torch' not in sys.modules\n"
            "assert model.MultitaskModel.__module__ == 'semcontrib.model.multitask'\n"
            "assert set(model.__all__) <= set(vars(model)), 'every lazy name is loaded with the first'\n"
            "assert list(methods.ATTRIBUTION_METHODS)[:3] == ['lrp', 'gradcam', 'ig']\n"
            "assert {'occlusion', 'shapley', 'lime', 'xrai', 'siam'} <= set(methods.ATTRIBUTION_METHODS)\n"
            "print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                          check=True)
    assert done.stdout.split() == ["True"], done.stdout + done.stderr
