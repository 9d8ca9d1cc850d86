"""The code layout of docs/design.md "Code layout", checked on the source: which package may import which,
and only settings classes read the environment."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

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


def imported_packages(tree: ast.Module) -> set[str]:
    """Our top-level packages a module imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & set(OURS)


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
