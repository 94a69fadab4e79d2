"""The import graph: which modules load without torch or Ray (the results, settings and report
code do), no import circle, every import going down the layers docs/architecture.md draws, and
modules short enough to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from conftest import ROOT, run_cli

TORCH_FREE = (
    "grok.schema",
    "grok.config",
    "grok.search",
    "grok.experiment",
    "grok.checkpoint",
    "grok.results",
    "grok.storage",
    "grok.reuse",
    "grok.cluster",
    "grok.tracking",
    "grok.display",
    "grok.plan",
    "plotting.study",
    "plotting.frames",
    "plotting.summary",
    "plotting.report",
)


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch_or_ray(module):
    code = (
        f"import sys, {module}; "
        "heavy = sorted({'torch', 'ray'} & set(sys.modules)); "
        "assert not heavy, heavy"
    )
    proc = run_cli("-c", code)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("module", ["grok.sweep", "grok.tune"])
def test_a_sweeps_driver_loads_ray_but_not_torch(module):
    """The driver never trains: torch loads in the trials' workers, not at every sweep's start."""
    code = f"import sys, {module}; assert 'ray' in sys.modules and 'torch' not in sys.modules"
    proc = run_cli("-c", code)
    assert proc.returncode == 0, proc.stderr


def test_the_check_itself_sees_torch_when_a_module_imports_it():
    proc = run_cli("-c", "import sys, grok.train; assert 'torch' not in sys.modules")
    assert proc.returncode == 1 and "AssertionError" in proc.stderr


# ---------------------------------------------------------------- the import graph


def module_files() -> dict[str, Path]:
    """Every module of the project's code: the packages' modules and the two command lines."""
    files = {
        f"{package}.{path.stem}": path
        for package in ("grok", "grok.commands", "plotting", "benchmarks")
        for path in sorted((ROOT / package.replace(".", "/")).glob("*.py"))
        if path.stem != "__init__"
    }
    files.update({name: ROOT / f"{name}.py" for name in ("tune_main", "infer")})
    return files


def is_main_block(node: ast.AST) -> bool:
    """`if __name__ == "__main__":`, the part of a module that runs only as a command."""
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and getattr(getattr(test, "left", None), "id", "") == "__name__"


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports anywhere (inside functions too), less its main block."""
    found: set[str] = set()
    todo = [ast.parse(path.read_text())]
    while todo:
        for node in ast.iter_child_nodes(todo.pop()):
            if is_main_block(node):
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                found.add(node.module)  # `from grok import train` names the module train
                found.update(f"{node.module}.{alias.name}" for alias in node.names)
            todo.append(node)
    return found & known


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(path, set(files)) - {name} for name, path in files.items()}


def cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of `graph` (its modules, the first repeated at the end), or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def documented_layers() -> dict[str, int]:
    """The layers of docs/architecture.md's "Import layers" block: module -> its layer."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    block = text.split("## Import layers", 1)[1].split("```", 2)[1]
    layers: dict[str, int] = {}
    for line in block.splitlines():
        if match := re.match(r"\s*(\d+)\s+(.+)$", line):
            for name in match.group(2).split(","):
                assert name.strip() not in layers, f"{name.strip()} is listed twice"
                layers[name.strip()] = int(match.group(1))
    return layers


def test_the_project_has_no_import_circle_lazy_imports_included():
    assert cycle(import_graph()) is None, " -> ".join(cycle(import_graph()))


def test_the_cycle_finder_sees_a_circle_and_the_graph_sees_lazy_imports():
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None
    graph = import_graph()
    assert "grok.fourier" in graph["grok.train"]  # a top-level import
    assert "plotting.search" in graph["plotting.summary"]  # an import inside a function
    assert "grok.run" not in graph["grok.train"]  # the `python -m grok.train` main block


def test_every_import_goes_down_the_layers_that_architecture_md_draws():
    layers, graph = documented_layers(), import_graph()
    assert sorted(layers) == sorted(graph), "docs/architecture.md lists other modules"
    upward = [
        f"{name} (layer {layers[name]}) imports {dep} (layer {layers[dep]})"
        for name, deps in graph.items()
        for dep in deps
        if layers[dep] >= layers[name]
    ]
    assert not upward, upward


@pytest.mark.parametrize("name", sorted(module_files()))
def test_a_module_stays_short(name):
    lines = len(module_files()[name].read_text().splitlines())
    assert lines <= (200 if name == "grok.commands.sweep" else 400), f"{name}: {lines} lines"
