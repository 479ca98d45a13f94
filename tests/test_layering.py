"""The layering, read from the code: every import (inside functions and TYPE_CHECKING blocks
too), parsed with ``ast``, checked against one table.

    core ← models ← generation ← engines (accel, served, …) ← targets ← features
         ← session ← front doors (magics, widgets, the package's __init__)

A unit is a top-level name under ``llmlab`` (``llmlab.accel``, ``llmlab.errors``), except the
modules :data:`UNITS` names, which are units of their own: what a model is made of (config
facts, where each family keeps its attention modules and experts, the routing hooks), which
the model registry, several features and interventions share; and a view that lives beside its
engine. A unit may import units of its own layer or
below, never above; units never import each other in a cycle; features never import each
other; only the front doors import the session; and nothing imports a private name (``_x``)
from another unit. Adding a unit means adding it to :data:`LAYERS`.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: Where each installed package lives in the tree (magics/ and widgets/ install as llmlab.*).
TREES = {
    "llmlab": ROOT / "llmlab",
    "llmlab.magics": ROOT / "magics",
    "llmlab.widgets": ROOT / "widgets",
}

#: Modules that are units of their own (module -> unit).
UNITS = {
    "llmlab.models.facts": "structure",
    "llmlab.attention.adapters": "structure",
    "llmlab.moe.adapters": "structure",
    "llmlab.moe.recording": "structure",
    "llmlab.accel.panel": "accel panel",
}
LAYERS: list[tuple[str, set[str]]] = [
    ("core", {"errors", "html", "tokens", "results", "devices", "files", "data"}),
    ("structure", {"structure"}),
    ("models", {"models", "memory"}),
    ("generation", {"generation", "measure"}),
    ("engines", {"accel", "served"}),
    ("targets", {"targets"}),
    ("features", {"attention", "lens", "moe", "tradeoff", "accel panel", "interventions"}),
    ("session", {"session"}),
    ("front doors", {"magics", "widgets", "__init__", "report", "coverage", "cli"}),
]
FEATURES = dict(LAYERS)["features"]
LAYER_OF = {unit: i for i, (_, units) in enumerate(LAYERS) for unit in units}
#: Who may import the session: the front doors only.
SESSION_USERS = dict(LAYERS)["front doors"]


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three packages."""
    found = {}
    for package, tree in TREES.items():
        for path in tree.rglob("*.py"):
            if ".venv" in path.parts or "__pycache__" in path.parts:
                continue
            parts = list(path.relative_to(tree).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


MODULES = _modules()


def unit_of(module: str) -> str:
    """``llmlab.accel.run`` -> ``accel``; ``llmlab`` itself -> ``__init__``."""
    if module in UNITS:
        return UNITS[module]
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(module: str, path: Path) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import in a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            for alias in node.names:
                # "from llmlab import memory" imports the module llmlab.memory.
                sub = f"{source}.{alias.name}"
                if sub in MODULES:
                    out.append((sub, None, node.lineno))
                else:
                    out.append((source, alias.name, node.lineno))
    return [(m, name, line) for m, name, line in out if m == "llmlab" or m.startswith("llmlab.")]


def _edges() -> list[tuple[str, str, str, str, str | None, int]]:
    """(importing unit, imported unit, importing module, imported module, imported name, line)
    for every import that crosses units."""
    edges = []
    for module, path in MODULES.items():
        for target, name, line in _imports(module, path):
            a, b = unit_of(module), unit_of(target)
            if a != b:
                edges.append((a, b, module, target, name, line))
    return edges


EDGES = _edges()


def _where(edges) -> str:
    return "; ".join(f"{m}:{line} imports {t}{f'.{n}' if n else ''}" for m, t, n, line in edges)


def test_every_unit_has_a_layer():
    units = {unit_of(m) for m in MODULES}
    assert not units - set(LAYER_OF), f"add these to LAYERS: {sorted(units - set(LAYER_OF))}"


def test_no_upward_import():
    upward = [e for e in EDGES if LAYER_OF.get(e[1], 0) > LAYER_OF.get(e[0], 0)]
    assert not upward, _where(e[2:] for e in upward)


def test_features_never_import_each_other():
    across = [e for e in EDGES if e[0] in FEATURES and e[1] in FEATURES]
    assert not across, _where(e[2:] for e in across)


def test_only_the_front_doors_import_the_session():
    users = [e for e in EDGES if e[1] == "session" and e[0] not in SESSION_USERS]
    assert not users, _where(e[2:] for e in users)


def test_no_private_name_is_imported_across_units():
    private = [e for e in EDGES if e[4] and e[4].startswith("_") and not e[4].startswith("__")]
    assert not private, _where(e[2:] for e in private)


def test_no_cycle_between_units():
    graph: dict[str, set[str]] = defaultdict(set)
    for a, b, *_ in EDGES:
        graph[a].add(b)
    cycles = []

    def visit(unit: str, path: list[str]) -> None:
        for nxt in sorted(graph[unit]):
            if nxt in path:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif len(path) < len(LAYER_OF):
                visit(nxt, [*path, nxt])

    for unit in sorted(graph):
        visit(unit, [unit])
    assert not cycles, sorted(set(cycles))[:5]


def test_no_command_probes_for_a_served_attribute():
    """Whether a model is served is asked through its capabilities (``lm.capabilities``),
    never by ``getattr(x, "served", ...)``."""
    probes = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value == "served"
            ):
                probes.append(f"{module}:{node.lineno}")
    assert not probes, probes
