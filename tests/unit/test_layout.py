"""The code layout of docs/design.md "Code layout", checked on the source: which package may import which,
no module imports itself through others, and only settings classes read the environment."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from graphlib import CycleError, TopologicalSorter
from itertools import pairwise
from pathlib import Path
from typing import TypeGuard

ROOT = Path(__file__).resolve().parents[2]
OURS = ("sagemaker_fastchat", "sync", "runtime", "stores", "contract", "arena", "rollout", "telemetry")
# Each package and what it may import besides itself (docs/design.md "Code layout"): the shell on top;
# sync/ and runtime/ side by side, neither importing the other; telemetry/ beside everything.
MAY_IMPORT = {
    "sagemaker_fastchat": {"sync", "runtime", "stores", "contract", "arena", "rollout", "telemetry"},
    "sync": {"stores", "contract", "rollout", "telemetry"},  # the Lambdas' image has no arena/
    "runtime": {"stores", "contract", "arena", "rollout", "telemetry"},
    "stores": {"contract", "arena", "rollout", "telemetry"},
    "rollout": {"contract"},
    "arena": {"contract"},
    "contract": set(),
    "telemetry": set(),
}
SETTINGS_MODULES = {"sagemaker_fastchat/settings.py", "sync/settings.py", "telemetry/settings.py"}


def sources(*packages: str) -> Iterator[tuple[str, ast.Module]]:
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def _is_type_checking(node: ast.AST) -> TypeGuard[ast.If]:
    """`if TYPE_CHECKING:` or `if typing.TYPE_CHECKING:`."""
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(node: ast.AST, *, type_checking: bool = True) -> Iterator[str]:
    """The dotted names a module imports, at the top or inside a function: `import a.b` gives `a.b`,
    `from a.b import c` gives `a.b.c` (a submodule, or a name defined in `a.b`). `type_checking=False`
    leaves out the imports under `if TYPE_CHECKING:`, which never run (its `else:` does)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        yield from (f"{node.module}.{alias.name}" for alias in node.names)
    for child in ast.iter_child_nodes(node):
        for part in child.orelse if not type_checking and _is_type_checking(child) else [child]:
            yield from imported_names(part, type_checking=type_checking)


def imported_packages(tree: ast.Module) -> set[str]:
    """Our top-level packages a module imports, at the top or inside a function."""
    return {name.split(".")[0] for name in imported_names(tree)} & set(OURS)


def test_packages_import_only_what_is_below_them() -> None:
    assert set(MAY_IMPORT) == set(OURS)
    wrong = [
        f"{path} imports {sorted(imported - MAY_IMPORT[package] - {package})}"
        for path, tree in sources(*OURS)
        for package in [path.split("/")[0]]
        for imported in [imported_packages(tree)]
        if imported - MAY_IMPORT[package] - {package}
    ]
    assert wrong == []


def module_name(path: str) -> str:
    parts = path.removesuffix(".py").split("/")
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(modules: Mapping[str, ast.Module]) -> dict[str, set[str]]:
    """Each of our modules and ours it imports when it runs (top level or in a function, not under
    TYPE_CHECKING). A name resolves to its longest prefix that is a module: `from a.b import f` is `a.b`,
    `from a import b` is `a.b` when b is a module. A package's own `__init__` is not counted as a
    dependency of its modules, as import checkers do not: that edge would make every re-export a cycle."""

    def resolve(name: str) -> str:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name

    return {
        module: {found for name in imported_names(tree, type_checking=False) if (found := resolve(name))}
        - {module}
        for module, tree in modules.items()
    }


def import_cycle(graph: Mapping[str, set[str]]) -> list[str] | None:
    """One cycle, each module importing the next (the first repeated at the end), or None."""
    try:
        TopologicalSorter(graph).prepare()  # reads the graph as node -> what comes before it
    except CycleError as exc:
        return list(reversed(exc.args[1]))
    return None


def test_no_module_imports_itself_through_others() -> None:
    """No import cycle between our modules, within a package or across (issue 14's was runtime/launch.py
    and runtime/web_ui.py importing each other): each module can be read, and loaded, on its own."""
    graph = import_graph({module_name(path): tree for path, tree in sources(*OURS)})
    assert "runtime.worker" in graph["sagemaker_fastchat.launch"]  # the graph sees real imports
    cycle = import_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_check_sees_a_cycle() -> None:
    """The check itself: an import inside a function closes a cycle, one under TYPE_CHECKING does not;
    `from package import module` is an edge to the module."""
    modules = {
        "p": ast.parse(""),
        "p.a": ast.parse("from p.b import f"),
        "p.b": ast.parse("import os\ndef f():\n    from p import c"),
        "p.c": ast.parse(
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import p.a\nelse:\n    import p"
        ),
    }
    assert import_graph(modules) == {"p": set(), "p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p"}}
    assert import_cycle(import_graph(modules)) is None
    modules["p.c"] = ast.parse("if True:\n    import p.a")
    cycle = import_cycle(import_graph(modules))
    assert cycle is not None
    assert sorted(cycle[1:]) == ["p.a", "p.b", "p.c"]
    assert all(b in import_graph(modules)[a] for a, b in pairwise(cycle))


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ"


def environment_reads(tree: ast.Module) -> list[int]:
    """Lines that read a variable: os.getenv, os.environ.get / [...] / `in` / keys, items, values, copy.
    Writes for child processes and libraries (os.environ[...] = , update, setdefault) are not reads."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            func = node.func
            if func.attr == "getenv" or (
                _is_environ(func.value) and func.attr in ("get", "keys", "items", "values", "copy")
            ):
                lines.append(node.lineno)
        elif (
            isinstance(node, ast.Subscript) and _is_environ(node.value) and isinstance(node.ctx, ast.Load)
        ) or (isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators)):
            lines.append(node.lineno)
    return lines


def test_only_settings_classes_read_the_environment() -> None:
    """The shell, the sync, the runtime and telemetry read variables through their settings classes only
    (pydantic-settings, in the settings modules); everything else is given values."""
    reads = {path: lines for path, tree in sources(*OURS) if (lines := environment_reads(tree))}
    assert reads == {}
    settings_classes = {
        path
        for path, tree in sources(*OURS)
        for node in ast.walk(tree)
        if isinstance(node, ast.ClassDef)
        and any(isinstance(b, ast.Name) and b.id == "BaseSettings" for b in node.bases)
    }
    assert settings_classes <= SETTINGS_MODULES, settings_classes - SETTINGS_MODULES


def test_the_source_check_sees_a_read() -> None:
    """The check itself: each kind of read is found, writes are not."""
    code = """
import os
a = os.environ.get("A")
b = os.environ["B"]
c = "C" in os.environ
d = os.getenv("D")
os.environ["E"] = "1"
os.environ.setdefault("F", "1")
os.environ.update({"G": "1"})
"""
    assert environment_reads(ast.parse(code)) == [3, 4, 5, 6]
