"""The package's layers point one way, and no modules import each other in a circle.

Read from the source (AST), no servers. A module may import its own package and
the layers below its own; packages that share a layer may not import each other.
Imports under ``if TYPE_CHECKING:`` count too: a type that needs an upward import
is a type in the wrong place.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "liftline"

# Bottom to top; written once here. The core is liftline's top-level modules.
LAYERS: list[set[str]] = [
    {"core"},
    {"queue", "store"},
    {"cluster"},
    {"jobs"},
    {"producer", "reads"},
    {"workers"},
    {"ingest", "autoscale"},
    {"status"},
    {"dashboard"},
    {"servers"},
    {"stack"},
    {"cli"},
    {"__main__"},
]
CORE = {"errors", "retry", "codec", "settings", "partitioning", "tickets", "app", "procs"}
LEVEL = {unit: n for n, layer in enumerate(LAYERS) for unit in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The layer unit of a liftline module: its subpackage, or 'core'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "root"  # liftline/__init__.py: hands names on lazily, outside the layers
    return "core" if parts[1] in CORE else parts[1]


def imports_of(path: Path, module: str) -> set[str]:
    """Every liftline module ``path`` imports (``from x import y`` counts x.y when
    that is a module, else x)."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("liftline"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                keep = len(base) - node.level + (1 if is_package else 0)
                target = ".".join(base[:keep] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("liftline"):
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                out.add(sub if sub in MODULES else target)
    out.discard(module)
    return {m for m in out if m in MODULES or m == "liftline"}


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
GRAPH = {name: imports_of(path, name) for name, path in MODULES.items()}


def test_every_package_is_placed_in_a_layer() -> None:
    units = {unit_of(m) for m in MODULES} - {"root"}
    assert units <= set(LEVEL), f"not in LAYERS: {sorted(units - set(LEVEL))}"


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Each import in ``graph`` that does not point down the layers, as a sentence."""
    wrong = []
    for module, deps in sorted(graph.items()):
        here = unit_of(module)
        for dep in sorted(deps):
            there = unit_of(dep)
            if module == "liftline" or there == here:
                continue
            if there == "root":
                wrong.append(f"{module} imports the package root 'liftline' (import the module)")
            elif LEVEL[there] >= LEVEL[here]:
                wrong.append(f"{module} ({here}) imports {dep} ({there})")
    return wrong


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules in ``graph`` that import each other in a circle
    (strongly connected components of more than one module, or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return cycles


def test_imports_point_down() -> None:
    wrong = upward_imports(GRAPH)
    assert not wrong, "imports that do not point down:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {m: {d for d in deps if d != "liftline"} for m, deps in GRAPH.items()}
    cycles = import_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_can_fail() -> None:
    """An upward import, a sideways one, an import of the package root and a cycle
    are each caught (so a clean tree means something)."""
    assert upward_imports({
        "liftline.codec": {"liftline.queue.topology"},          # core -> queue: up
        "liftline.queue.batch": {"liftline.store.keys"},        # siblings: sideways
        "liftline.store.memory": {"liftline"},                  # the lazy root
        "liftline.cli.main": {"liftline.store.keys"},           # down: fine
    }) == [
        "liftline.codec (core) imports liftline.queue.topology (queue)",
        "liftline.queue.batch (queue) imports liftline.store.keys (store)",
        "liftline.store.memory imports the package root 'liftline' (import the module)",
    ]
    assert import_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert import_cycles({"a": {"a"}}) == [["a"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", ["liftline.codec", "liftline.partitioning",
                                    "liftline.settings", "liftline.tickets", "liftline.app"])
def test_core_modules_load_neither_pika_nor_redis(module: str) -> None:
    code = (f"import sys, {module}\n"
            "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('pika', 'redis'))\n"
            "assert not loaded, loaded\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_no_module_is_over_500_lines() -> None:
    long = {name: n for name, path in MODULES.items()
            if (n := len(path.read_text().splitlines())) > 500}
    assert not long, f"modules over 500 lines: {long}"
