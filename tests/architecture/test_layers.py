"""The package's layering, checked on its source: no import cycles, no upward imports.

Layers, lowest first: the core (errors, dtypes, sizes, io/, tensor, groups, tensormap,
surgery, torch_bridge), formats/, converters/, the API (api, the package root), cli/ (with
``python -m ckconv``). A module may
import from its own layer or lower ones only. Imports under ``if TYPE_CHECKING:`` are for
annotations and run never: they are ignored. Lazy imports inside functions count.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import ROOT

PACKAGE = ROOT / "ckconv"

#: Module-name prefixes of each layer, lowest first.
LAYERS = [
    ("core", ("ckconv.errors", "ckconv.records", "ckconv.dtypes", "ckconv.sizes", "ckconv.io",
              "ckconv.tensor",
              "ckconv.groups", "ckconv.tensormap", "ckconv.surgery", "ckconv.torch_bridge")),
    ("formats", ("ckconv.formats",)),
    ("converters", ("ckconv.converters",)),
    ("api", ("ckconv.api", "ckconv.hub", "ckconv.remote", "ckconv.batch")),
    ("cli", ("ckconv.cli", "ckconv.__main__")),
]
#: Upward imports allowed on purpose, each with its reason (lazy, inside one method).
ALLOWED = {
    ("ckconv.tensormap", "ckconv.converters.like"):
        "TensorMap.like(template), the map-level spelling of --like that users ask for",
}
#: The package root only re-exports lazily (``ckconv.load``...): it sits with the API.
ROOT_MODULE = "ckconv"


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _layer(module: str) -> int:
    if module == ROOT_MODULE:
        return 3
    for i, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str) -> set[str]:
    """Every ckconv module ``module`` imports (the module itself, not names in it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    known = set(_modules())
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for sub in child.orelse:
                    visit(sub)
                continue
            if isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("ckconv"):
                        found.add(alias.name)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if not target.startswith("ckconv"):
                    continue
                for alias in child.names:  # "from . import x" imports the module ckconv.x
                    sub = f"{target}.{alias.name}"
                    found.add(sub if sub in known else target)
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_every_module_has_a_layer_and_imports_none_above_it() -> None:
    upward = []
    for module, path in sorted(_modules().items()):
        mine = _layer(module)
        for target in sorted(_imports(path, module)):
            if target in _modules() and _layer(target) > mine and (module, target) not in ALLOWED:
                upward.append(f"{module} ({LAYERS[mine][0] if module != ROOT_MODULE else 'api'}) "
                              f"imports {target}")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles() -> None:
    modules = _modules()
    graph = {m: {t for t in _imports(p, m) if t in modules and (m, t) not in ALLOWED}
             for m, p in modules.items()}
    # Importing a submodule runs its package's __init__ first: that is an edge too, but one
    # the language makes, not a cycle anyone wrote; only written imports are followed.
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                dfs(t)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_core_modules_import_no_format_module() -> None:
    """The issue's own check: TF (or any format) stays out of the core."""
    modules = _modules()
    for module in ("ckconv.tensormap", "ckconv.tensor", "ckconv.io.streaming", "ckconv.surgery",
                   "ckconv.api"):
        direct = _imports(modules[module], module)
        bad = sorted(t for t in direct if t.startswith("ckconv.formats.tf"))
        assert not bad, f"{module} imports {bad}"


def test_the_check_finds_what_it_looks_for(tmp_path: Path) -> None:
    """The walker sees relative, absolute, lazy and from-package imports (so the tests above
    can fail), and skips TYPE_CHECKING blocks."""
    src = tmp_path / "m.py"
    src.write_text("from typing import TYPE_CHECKING\n"
                   "from ..formats import sharding\n"
                   "import ckconv.cli.main\n"
                   "if TYPE_CHECKING:\n    from ..converters import engine\n"
                   "def f():\n    from .streaming import copy_tensor\n")
    # Pretend it lives at ckconv/io/m.py.
    fake = PACKAGE / "io" / "m.py"
    found = _imports_of_text(src.read_text(), fake, "ckconv.io.m")
    assert found == {"ckconv.formats.sharding", "ckconv.cli.main", "ckconv.io.streaming"}


def _imports_of_text(text: str, path: Path, module: str) -> set[str]:
    tmp = path.with_name("_layers_probe.py")
    tmp.write_text(text)
    try:
        return _imports(tmp, module)
    finally:
        tmp.unlink()
