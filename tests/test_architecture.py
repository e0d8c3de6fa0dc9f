"""The layout of ARCHITECTURE.md, kept by the code: imports point down the floors, siblings on one
floor stay apart, no import cycle among files, and only one module reads a ConfigDict."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lcsm_jax"

# Unit -> floor. A unit may import only its own files and units on lower floors.
FLOORS = {
    "lcsm_jax.eos": 1,
    "lcsm_jax.data": 1,
    "lcsm_jax.nn": 2,
    "lcsm_jax.ops": 2,
    "lcsm_jax.blocks": 3,
    "lcsm_jax.layers": 3,
    "lcsm_jax.m2": 3,
    "lcsm_jax.lrcssm": 3,
    "lcsm_jax.attention": 3,
    "lcsm_jax.catalogue": 4,
    "lcsm_jax.models": 5,
    "lcsm_jax.train": 6,
}
# Lower units a unit may not import although they are below it.
APART = {"lcsm_jax.data": {"lcsm_jax.eos"}, "lcsm_jax.eos": {"lcsm_jax.data"}}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _unit(module: str) -> str | None:
    matches = [u for u in FLOORS if module == u or module.startswith(u + ".")]
    return max(matches, key=len) if matches else None


def _imports(path: Path) -> set[str]:
    """The project modules `path` imports anywhere in it (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from pkg import mod` names the file pkg/mod.py; `from pkg import name`, pkg itself.
            subs = [f"{node.module}.{a.name}" for a in node.names]
            names = [n for n in subs if n in MODULES]
            if len(names) < len(subs):
                names.append(node.module)
        else:
            continue
        found.update(n for n in names if n.split(".")[0] == "lcsm_jax" and n in MODULES)
    return found


GRAPH = {module: _imports(path) for module, path in MODULES.items()}


def test_every_module_belongs_to_a_floor():
    assert [m for m in MODULES if m != "lcsm_jax" and _unit(m) is None] == []


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m != "lcsm_jax"))
def test_imports_point_down_and_siblings_stay_apart(module):
    unit = _unit(module)
    bad = []
    for target in sorted(GRAPH[module]):
        other = _unit(target)
        if other == unit or target == "lcsm_jax":
            continue
        if FLOORS[other] >= FLOORS[unit] or other in APART.get(unit, ()):
            bad.append(f"{module} (floor {FLOORS[unit]}) -> {target} (floor {FLOORS[other]})")
    assert bad == []


def test_no_import_cycle_among_files():
    # Tarjan's strongly connected components over the file graph; a package's face
    # (__init__.py) counts as importing what it re-exports.
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
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
            # A package imported by its own submodule is not a cycle of files.
            real = [m for m in component if not (MODULES[m].name == "__init__.py")]
            if len(real) > 1:
                cycles.append(sorted(component))

    for v in GRAPH:
        if v not in index:
            visit(v)
    assert cycles == []


def test_only_the_translation_module_reads_ml_collections():
    readers = sorted(_module(p) for p in PACKAGE.rglob("*.py") if "ml_collections" in p.read_text())
    assert readers == ["lcsm_jax.train.experiment"]
