"""The package's modules import each other without a cycle.

Every module of lever_transfer/ is parsed (not imported) and every import statement counts,
those inside functions and ``if TYPE_CHECKING:`` blocks too: a lazy import that closes a cycle
only moves the failure to the first call that runs it. ``from X import name`` points at the
module X.name when the package has one, else at X; ``import X.Y`` points at X.Y; relative
imports are resolved against the importing module. Edges that leave the package are dropped.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "lever_transfer"


def modules_of(root: Path) -> dict[str, tuple[Path, bool]]:
    """Dotted module name -> (file, is a package's __init__) for every .py file under root."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = (root.name, *path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute name ``from {'.' * level}{target} import ...`` means inside ``module``."""
    if level == 0:
        return target or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[:len(base) - (level - 1)]
    return ".".join([*base, target] if target else base)


def import_edges(root: Path) -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its source."""
    modules = modules_of(root)
    edges: dict[str, set[str]] = {name: set() for name in modules}
    for name, (path, is_package) in modules.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                source = absolute(name, is_package, node.level, node.module)
                targets = [f"{source}.{alias.name}" if f"{source}.{alias.name}" in modules
                           else source for alias in node.names]
            edges[name] |= {target for target in targets if target in modules and target != name}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, sorted for a stable
    answer)."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt):], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_package_has_no_import_cycle():
    edges = import_edges(PACKAGE)
    assert len(edges) > 30 and edges["lever_transfer.cli"]  # the package was read
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


# -------------------------------------------------------------- the edge rules, on a tiny package
def write_package(root: Path, files: dict[str, str]) -> Path:
    package = root / "pkg"
    for relative, text in files.items():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        (package / relative).write_text(text)
    return package


def test_every_import_form_becomes_an_edge_to_the_module_it_loads(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "def lazy():\n    from . import a\n",  # inside a function: counted
        "a.py": "import os\nimport pkg.sub.c\nfrom pkg import b\n",
        "b.py": "from .sub import name_in_sub\nfrom .sub.c import thing\n",
        "sub/__init__.py": "from . import c\nfrom .. import a as again\nname_in_sub = 1\n",
        "sub/c.py": ("import typing\nif typing.TYPE_CHECKING:\n    from ..b import Hint\n"
                     "class K:\n    def m(self):\n        import pkg.a\n"),
    })
    assert modules_of(package) == {
        "pkg": (package / "__init__.py", True), "pkg.a": (package / "a.py", False),
        "pkg.b": (package / "b.py", False), "pkg.sub": (package / "sub" / "__init__.py", True),
        "pkg.sub.c": (package / "sub" / "c.py", False)}
    assert import_edges(package) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.sub.c", "pkg.b"},  # os left out: not the package's
        "pkg.b": {"pkg.sub", "pkg.sub.c"},  # a name in sub.__init__ points at the package
        "pkg.sub": {"pkg.sub.c", "pkg.a"},
        "pkg.sub.c": {"pkg.b", "pkg.a"},  # under TYPE_CHECKING and in a method: both count
    }


def test_relative_imports_resolve_from_modules_and_from_packages():
    assert absolute("pkg.sub.c", False, 1, None) == "pkg.sub"
    assert absolute("pkg.sub.c", False, 2, "b") == "pkg.b"
    assert absolute("pkg.sub", True, 1, "c") == "pkg.sub.c"
    assert absolute("pkg.sub", True, 2, None) == "pkg"
    assert absolute("pkg.a", False, 0, "json") == "json"


def test_a_cycle_is_found_and_printed_in_order_and_a_tree_has_none(tmp_path):
    package = write_package(tmp_path, {
        "__init__.py": "", "a.py": "from . import b\n", "b.py": "from .c import f\n",
        "c.py": "def f():\n    from pkg.a import g\n", "d.py": "import pkg.a\n"})
    assert find_cycle(import_edges(package)) == ["pkg.a", "pkg.b", "pkg.c", "pkg.a"]
    (package / "c.py").write_text("def f():\n    return 1\n")
    assert find_cycle(import_edges(package)) is None
    assert find_cycle({"x": {"x"}}) == ["x", "x"]  # a self-loop (import_edges drops its own)
