"""Imports only go down: core's packages stand in layers, and no module imports one above it.

The layers, from the ground up (docs/architecture.md, "Layers"):

    version, errors, textio, cache, progress, threads, interrupts, environment, outputs/  (foundation)
    plugin/                                   (the plugin interfaces, discovery, contract checks)
    models/                                   (resolve, load, adapt a model)
    calibration/, truth/, pruning/            (the maths: windows, statement sets and probes, the engine)
    eval/                                     (perplexity, TruthfulQA, truthfulness)
    builtins/                                 (core's own plugins)
    reporting/                                (report.md/json, plots, comparisons)
    run/                                      (config, plan, stages, pipeline, sweep)
    testing/                                  (the plugin author kit: runs pruners as a run does)
    cli/, __main__                            (the commands)

Why: a module that imports one above it ties the lower layer to everything the higher one
brings, and a circle of imports makes "which module comes first" a matter of chance (and of
where the import statement hides). Every import counts, at module level or inside a function or
under ``TYPE_CHECKING``: an import hidden in a function is still a dependency. A module may import
its own layer; circles are refused separately, except among cli/'s command modules, which
register themselves on the app that imports them. No core module imports the facade
``truthprune`` (it is for plugins and users: it names every layer).
"""

from __future__ import annotations

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "core" / "truthprune"

LAYERS: tuple[tuple[str, ...], ...] = (
    ("version", "errors", "textio", "cache", "progress", "threads", "interrupts", "environment", "outputs"),
    ("plugin",),
    ("models",),
    ("calibration", "truth", "pruning"),
    ("eval",),
    ("builtins",),
    ("reporting",),
    ("run",),
    ("testing",),
    ("cli", "__main__"),
)
FACADE = "truthprune"
CIRCLES_ALLOWED_IN = "truthprune.cli."


def _module_name(path: Path) -> str:
    parts = ["truthprune", *path.relative_to(CORE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(CORE.rglob("*.py"))}


def _imported(module: str, is_package: bool, node: ast.Import | ast.ImportFrom, modules: set[str]) -> list[str]:
    """The core modules one import statement names (``from . import x`` names module ``x`` when it is one)."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = module.split(".") if is_package else module.split(".")[:-1]
        if node.level:
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join([*base, *([node.module] if node.module else [])])
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    out = []
    for name in names:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        if name in modules:
            out.append(name)
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the core modules it imports anywhere in its text."""
    mods = core_modules()
    graph: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                targets.update(_imported(name, path.name == "__init__.py", node, set(mods)))
        targets.discard(name)
        graph[name] = targets
    return graph


def layer_of(module: str) -> int:
    """The index of ``module``'s layer in LAYERS (the facade stands above them all)."""
    if module == FACADE:
        return len(LAYERS)
    top = module.split(".")[1]
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"{module} is in no layer: add its package to LAYERS in tests/test_layers.py "
                         "and to docs/architecture.md")


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} (layer {layer_of(a)}) imports {b} (layer {layer_of(b)})"
                  for a, targets in graph.items() if a != FACADE
                  for b in targets if layer_of(b) > layer_of(a))


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_every_core_package_has_a_layer():
    for module in core_modules():
        if module != FACADE:
            layer_of(module)


def test_no_import_runs_up_a_layer():
    assert upward_imports(import_graph()) == []


def test_no_import_circle_outside_cli_command_registration():
    graph = {a: {b for b in targets if b != FACADE} for a, targets in import_graph().items() if a != FACADE}
    bad = [c for c in circles(graph) if not all(m.startswith(CIRCLES_ALLOWED_IN) for m in c)]
    assert bad == []


def test_the_checks_see_a_wrong_way_import_and_a_circle():
    """The rule itself can fail: an engine module importing run/, and two modules importing each other."""
    graph = {"truthprune.pruning.engine.x": {"truthprune.run.stages"}, "truthprune.run.stages": set()}
    assert upward_imports(graph) == ["truthprune.pruning.engine.x (layer 3) imports truthprune.run.stages (layer 7)"]
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from ...run.stages import save\nimport truthprune.errors\nfrom . import offload\n")
    mods = {"truthprune.run.stages", "truthprune.errors", "truthprune.pruning.engine.offload"}
    found = [m for node in tree.body for m in _imported("truthprune.pruning.engine.block", False, node, mods)]
    assert found == ["truthprune.run.stages", "truthprune.errors", "truthprune.pruning.engine.offload"]
