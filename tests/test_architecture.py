"""The package's architecture, read from the source with `ast` (nothing imported): every module sits in a
layer ("room") and imports only from its own layer or lower ones, the module graph has no cycles, and the
reading side (reports, judging, store, the torch-free model modules, the CLI's merge, show and list) works
in a process where torch, onnx and onnxruntime cannot be imported."""

from __future__ import annotations

import ast
import contextlib
import io
import itertools
import json
import subprocess
import sys
import textwrap
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "harness"
GOLDEN = REPO / "golden"
REFERENCE_ID = "rnn-h8-s0"

# Lowest first: a module may import only from its own layer or a lower one. A new room goes in here.
MODULE_LAYERS = {"harness": 0, "harness.errors": 0, "harness.verdicts": 0, "harness.options": 0,
                 "harness.__main__": 7}
ROOM_LAYERS = {"harness.model": 1, "harness.backends": 2, "harness.store": 3, "harness.judging": 4,
               "harness.reports": 5, "harness.session": 6, "harness.cli": 7, "harness.pytest_plugin": 7}

Graph = Mapping[str, Iterable[str]]


@dataclass(frozen=True)
class Import:
    source: str
    target: str
    line: int


def layer_of(module: str) -> int | None:
    """The layer of a module: its own entry, else its room's (a room is a subpackage and all under it)."""
    if module in MODULE_LAYERS:
        return MODULE_LAYERS[module]
    rooms = [room for room in ROOM_LAYERS if module == room or module.startswith(f"{room}.")]
    return ROOM_LAYERS[max(rooms, key=len)] if rooms else None


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module under the package by dotted name; a package's `__init__` is the package's own name."""
    modules = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name of a (possibly relative) `from ... import`."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join([*base, node.module] if node.module else base)


def harness_imports(modules: Mapping[str, Path]) -> list[Import]:
    """Every `import harness...` and `from harness... import ...` anywhere in each module (inside functions and
    `if TYPE_CHECKING:` blocks too); `from harness.x import y` is an import of `harness.x.y` when that is a module."""
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, path, node)
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                           for alias in node.names]
            else:
                continue
            found += [Import(module, target, node.lineno) for target in dict.fromkeys(targets)
                      if target == "harness" or target.startswith("harness.")]
    return found


def import_graph(imports: Iterable[Import]) -> dict[str, set[str]]:
    """Module -> the modules it imports. Only explicit imports are edges: the implicit execution of a parent
    package's `__init__` when a submodule is imported is not one (else `harness.cli` -> `harness.cli.parser`,
    which every package that re-exports a submodule has, would always look like a cycle)."""
    graph: dict[str, set[str]] = {}
    for edge in imports:
        graph.setdefault(edge.source, set()).add(edge.target)
    return graph


def upward_imports(graph: Graph, layer: Callable[[str], int | None]) -> list[tuple[str, str]]:
    """The (module, imported) pairs where the imported module is in a higher layer than the importer."""
    return sorted((source, target) for source, targets in graph.items() for target in targets
                  if (a := layer(source)) is not None and (b := layer(target)) is not None and b > a)


def strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's strongly connected components of the graph, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def _shortest_cycle(graph: Graph, start: str, within: set[str]) -> list[str]:
    """The shortest path start -> ... -> start inside one strongly connected component (breadth first)."""
    parents: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph.get(node, ())):
            if target == start:
                path = [node]
                while path[-1] != start:
                    path.append(parents[path[-1]])
                return [start, *reversed(path[:-1]), start]
            if target in within and target not in parents:
                parents[target] = node
                queue.append(target)
    raise AssertionError(f"{start} is on no cycle")  # unreachable for a member of a cyclic component


def import_cycles(graph: Graph) -> list[str]:
    """Every cyclic component as cycles `a -> b -> a`: the shortest one through each of its members."""
    cycles: dict[frozenset[tuple[str, str]], str] = {}
    for component in strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph.get(component[0], ()):
            continue
        for member in component:
            cycle = _shortest_cycle(graph, member, set(component))
            cycles.setdefault(frozenset(itertools.pairwise(cycle)), " -> ".join(cycle))
    return sorted(cycles.values())


@pytest.fixture(scope="module")
def modules() -> dict[str, Path]:
    found = module_files()
    assert {"harness", "harness.cli", "harness.reports.merge", "harness.model.config"} <= set(found)
    return found


@pytest.fixture(scope="module")
def imports(modules: dict[str, Path]) -> list[Import]:
    found = harness_imports(modules)
    assert len(found) > 100  # the walk found the package's imports, not none
    return found


def _lines(imports: Iterable[Import], source: str, target: str) -> str:
    return ", ".join(str(edge.line) for edge in imports if (edge.source, edge.target) == (source, target))


def test_every_module_is_in_a_layer(modules: dict[str, Path]) -> None:
    """A new room (or top-level module) must be added to the layer table."""
    unplaced = [f"{module} ({path.relative_to(REPO)})" for module, path in modules.items() if layer_of(module) is None]
    assert not unplaced, "modules in no layer (add them to MODULE_LAYERS or ROOM_LAYERS):\n  " + "\n  ".join(unplaced)


def test_every_harness_import_names_a_module(modules: dict[str, Path], imports: list[Import]) -> None:
    """The graph is only as good as its edges: each import resolves to a module of the package."""
    dangling = [f"{edge.source}:{edge.line} -> {edge.target}" for edge in imports if edge.target not in modules]
    assert not dangling, "imports of no module under harness/:\n  " + "\n  ".join(dangling)


def test_no_module_imports_from_a_higher_layer(imports: list[Import]) -> None:
    """Imports point down the layers (or sideways within one), never up."""
    upward = [f"{source} -> {target} (layer {layer_of(source)} -> layer {layer_of(target)}; "
              f"line {_lines(imports, source, target)})"
              for source, target in upward_imports(import_graph(imports), layer_of)]
    assert not upward, "imports from a higher layer:\n  " + "\n  ".join(upward)


def test_no_import_cycles(imports: list[Import]) -> None:
    """No module reaches itself through imports, counting function-level and TYPE_CHECKING imports."""
    cycles = import_cycles(import_graph(imports))
    assert not cycles, "import cycles:\n  " + "\n  ".join(cycles)


def test_checker_reports_an_upward_import() -> None:
    """The layer check can fail: an import from a higher layer in a synthetic graph is reported."""
    layers = {"low": 0, "low.other": 0, "high": 1}
    graph = {"low": {"low.other"}, "high": {"low"}, "low.other": {"high"}}
    assert upward_imports(graph, layers.get) == [("low.other", "high")]


def test_checker_reports_import_cycles() -> None:
    """The cycle check can fail: a two-module cycle, a self-import and a longer cycle are each reported."""
    graph = {"a": {"b"}, "b": {"a", "c"}, "c": set(), "d": {"d"}, "e": {"f"}, "f": {"g"}, "g": {"e", "c"}}
    assert import_cycles(graph) == ["a -> b -> a", "d -> d", "e -> f -> g -> e"]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


TORCH_FREE_PREFIXES = ("harness.reports", "harness.judging", "harness.store")
TORCH_FREE_MODULES = ("harness.verdicts", "harness.options", "harness.model.config", "harness.model.suite",
                      "harness.model.axes", "harness.model.environment")

WITHOUT_TORCH = textwrap.dedent("""
    import sys

    for blocked in ("torch", "onnx", "onnxruntime", "onnxscript"):
        sys.modules[blocked] = None  # `import torch` now raises ImportError
    import importlib
    import json

    arguments = json.loads(sys.argv[1])
    for name in arguments["modules"]:
        importlib.import_module(name)
    print("imported", len(arguments["modules"]), "modules")

    from harness.cli import main

    golden_dir = arguments["golden_dir"]
    for argv in (["merge", *arguments["reports"]], ["show", arguments["config"], "--golden-dir", golden_dir],
                 ["show", arguments["config"], "--json", "--golden-dir", golden_dir], ["list"],
                 ["prune", "--golden-dir", golden_dir], ["review", golden_dir, "--golden-dir", golden_dir]):
        code = main(argv)
        assert code == 0, f"harness {' '.join(argv)} exited {code}"
    for blocked in ("torch", "onnx", "onnxruntime", "onnxscript"):
        assert sys.modules.get(blocked) is None, f"{blocked} was imported"
    print("torch-free: done")
""")


@pytest.fixture(scope="module")
def shard_reports(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """JSON reports of the three shards of an eager run against the committed goldens (made once)."""
    from harness.cli import main

    directory = tmp_path_factory.mktemp("shards")
    reports = []
    for shard in (1, 2, 3):
        report = directory / f"r{shard}.json"
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["run", "--backend", "eager", "--shard", f"{shard}/3", "--json", str(report),
                         "--golden-dir", str(GOLDEN), "--quiet"])
        assert code == 0, out.getvalue()
        reports.append(report)
    return reports


def _torch_free_modules(modules: Iterable[str]) -> Iterator[str]:
    for module in sorted(modules):
        if module in TORCH_FREE_MODULES or any(module == p or module.startswith(f"{p}.") for p in TORCH_FREE_PREFIXES):
            yield module


def test_reports_work_without_torch(modules: dict[str, Path], shard_reports: list[Path]) -> None:
    """In a process where torch, onnx and onnxruntime cannot be imported, the reading side imports, and
    `harness merge`, `harness show` (text and JSON) and `harness list` all exit 0."""
    wanted = list(_torch_free_modules(modules))
    assert set(TORCH_FREE_MODULES) <= set(wanted) and "harness.reports.merge" in wanted
    arguments = {"modules": wanted, "reports": [str(path) for path in shard_reports], "config": REFERENCE_ID,
                 "golden_dir": str(GOLDEN)}
    result = subprocess.run([sys.executable, "-c", WITHOUT_TORCH, json.dumps(arguments)], cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"imported {len(wanted)} modules" in result.stdout
    assert "OK:" in result.stdout  # the merge's summary
    assert "missing shards" not in result.stdout
    assert f"{REFERENCE_ID}  (content hash" in result.stdout  # show
    assert f'"config_id": "{REFERENCE_ID}"' in result.stdout  # show --json
    assert result.stdout.rstrip().endswith("torch-free: done")
