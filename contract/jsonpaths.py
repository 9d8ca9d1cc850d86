"""JSONPath expressions compiled once per spec.

Plain paths (`$.a.b[0].c`) are turned into a tuple of steps: reading them is a few dict lookups (~0.1 us)
instead of jsonpath-ng's find (~3 us), and only plain paths can be *written* into a request body.
Other expressions (filters, wildcards, slices) are read with jsonpath-ng and are refused for writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jsonpath_ng import jsonpath
from jsonpath_ng.parser import parse as _parse_jsonpath

Step = str | int
_MISSING = object()
# A path's characters and steps are bounded: the compiled MultiReader nests two blocks per step and Python
# refuses code nested ~100 levels deep (a 60-step path used to be accepted and then fail every chat), and
# parsing recurses per step (a 1,200-step path crashed the validator). 32 steps decode end to end (tested).
MAX_PATH_CHARS = 256
MAX_PATH_STEPS = 32


class PathSyntaxError(ValueError):
    """The text is not a JSONPath expression."""


def _steps_of(node: Any) -> list[Step] | None:
    """The plain steps of a parsed expression, or None when it is not a plain path."""
    if isinstance(node, jsonpath.Root | jsonpath.This):
        return []
    if isinstance(node, jsonpath.Child):
        left, right = _steps_of(node.left), _steps_of(node.right)
        return None if left is None or right is None else left + right
    if isinstance(node, jsonpath.Fields):
        if len(node.fields) != 1 or node.fields[0] == "*":
            return None
        return [node.fields[0]]
    if isinstance(node, jsonpath.Index):
        indices: tuple[Any, ...] = getattr(node, "indices", None) or (getattr(node, "index", None),)  # < 1.7
        return [int(indices[0])] if len(indices) == 1 and isinstance(indices[0], int) else None
    return None


def _count_steps(expr: Any) -> int:
    """The leaves of a parsed expression (fields, indexes, filters...), counted without recursion."""
    count, stack = 0, [expr]
    while stack:
        node = stack.pop()
        children = [getattr(node, side) for side in ("left", "right") if hasattr(node, side)]
        if children:
            stack.extend(children)
        elif not isinstance(node, jsonpath.Root | jsonpath.This):
            count += 1
    return count


@dataclass(frozen=True)
class JsonPath:
    """A compiled JSONPath: `steps` is set for plain paths, which are also writable."""

    source: str
    steps: tuple[Step, ...] | None
    _expr: Any = field(repr=False, compare=False)

    @classmethod
    def compile(cls, source: str) -> JsonPath:
        """Compile (cached: jsonpath-ng's parser costs ~170 us a path, and most models share paths)."""
        return _compile_cached(source)

    @classmethod
    def _compile(cls, source: str) -> JsonPath:
        if len(source) > MAX_PATH_CHARS:
            raise PathSyntaxError(f"is {len(source)} characters long; the limit is {MAX_PATH_CHARS}")
        try:
            expr = _parse_jsonpath(source)
        except Exception as exc:  # jsonpath-ng raises bare Exception subclasses of several kinds
            raise PathSyntaxError(f"{source!r} is not a JSONPath expression ({exc})") from None
        count = _count_steps(expr)
        if count > MAX_PATH_STEPS:
            raise PathSyntaxError(f"has {count} steps; the limit is {MAX_PATH_STEPS}")
        steps = _steps_of(expr)
        return cls(source, tuple(steps) if steps is not None else None, expr)

    @property
    def writable(self) -> bool:
        return self.steps is not None and len(self.steps) > 0

    def find(self, doc: Any) -> Any:
        """The first value the path selects in `doc`, or MISSING."""
        if self.steps is None:
            matches = self._expr.find(doc)
            return matches[0].value if matches else MISSING
        node = doc
        for step in self.steps:
            if isinstance(step, str):
                if not isinstance(node, dict) or step not in node:
                    return MISSING
                node = node[step]
            else:
                if not isinstance(node, list) or not -len(node) <= step < len(node):
                    return MISSING
                node = node[step]
        return node


MISSING: Any = _MISSING


@lru_cache(maxsize=4096)
def _compile_cached(source: str) -> JsonPath:
    return JsonPath._compile(source)


def write_problem(path: JsonPath, doc: Any) -> str | None:
    """Why `path` cannot be written into `doc` (None when it can). Missing object keys may be created."""
    if not path.writable:
        return "only plain paths of fields and indexes (like $.parameters.stop) can be written into a request"
    assert path.steps is not None
    node = doc
    for depth, step in enumerate(path.steps):
        last = depth == len(path.steps) - 1
        if isinstance(step, str):
            if not isinstance(node, dict):
                return f"step {step!r} needs an object but the defaults hold {type(node).__name__} there"
            if step not in node:
                return None  # the rest is created on write
            node = node[step]
        else:
            if not isinstance(node, list):
                return f"index [{step}] needs an array but the defaults hold {type(node).__name__} there"
            if not -len(node) <= step < len(node):
                return f"index [{step}] is outside the defaults' array of {len(node)} item(s)"
            node = node[step]
        if last:
            return None
    return None


def set_at(doc: Any, steps: tuple[Step, ...], value: Any) -> None:
    """Write `value` at a plain path, creating missing objects (validated beforehand by write_problem)."""
    node = doc
    for step in steps[:-1]:
        if isinstance(step, str) and step not in node:
            node[step] = {}
        node = node[step]
    node[steps[-1]] = value


def delete_at(doc: Any, steps: tuple[Step, ...]) -> None:
    """Remove the key a plain path names (an array item is set to None instead, to keep positions)."""
    node = doc
    for step in steps[:-1]:
        if isinstance(step, str) and (not isinstance(node, dict) or step not in node):
            return
        node = node[step]
    last = steps[-1]
    if isinstance(last, str):
        if isinstance(node, dict):
            node.pop(last, None)
    elif isinstance(node, list) and -len(node) <= last < len(node):
        node[last] = None


class MultiReader:
    """Reads many paths from one document in a single pass (compiled once per spec).

    Plain paths are merged into a tree keyed by their steps and the tree is compiled into one Python
    function of nested lookups (like dataclasses builds its methods): shared parents are looked up once,
    a missing or null parent skips every path below it, and no interpretation is left per line. This keeps
    decoding a streamed line within a small multiple of `json.loads`. Steps are embedded with repr(), so
    any field name is safe. Other expressions (filters, wildcards) are read with jsonpath-ng.
    """

    def __init__(self, paths: dict[str, JsonPath]) -> None:
        tree: dict[Step, Any] = {}
        self._other: list[tuple[str, JsonPath]] = []
        for name, path in paths.items():
            if not path.steps:
                self._other.append((name, path))
                continue
            node = tree
            for step in path.steps[:-1]:
                child = node.setdefault(step, {})
                if isinstance(child, str):  # a path that is also a parent: read it the slow way
                    self._other.append((name, path))
                    break
                node = child
            else:
                if path.steps[-1] in node:
                    self._other.append((name, path))
                else:
                    node[path.steps[-1]] = name
        self._read_plain = _compile_tree(tree)

    def read(self, doc: Any) -> dict[str, Any]:
        """Field name -> value for every path that finds a non-null value."""
        out = self._read_plain(doc)
        for name, path in self._other:
            value = path.find(doc)
            if value is not MISSING and value is not None:
                out[name] = value
        return out


def _compile_tree(tree: dict[Step, Any]) -> Callable[[Any], dict[str, Any]]:
    """`def read(doc) -> dict` doing the tree's lookups as straight-line code."""
    lines = ["def read(v0):", "    out = {}"]
    names = iter(range(1, 1 << 30))

    def emit(node: dict[Step, Any], var: str, indent: str) -> None:
        keys = [step for step in node if type(step) is str]
        indexes = [step for step in node if type(step) is int]
        for steps, guard, get in (
            (keys, f"type({var}) is dict", "{var}.get({step!r})"),
            (
                indexes,
                f"type({var}) is list",
                "({var}[{step}] if -len({var}) <= {step} < len({var}) else None)",
            ),
        ):
            if not steps:
                continue
            lines.append(f"{indent}if {guard}:")
            for step in steps:
                child = f"v{next(names)}"
                lines.append(f"{indent}    {child} = {get.format(var=var, step=step)}")
                lines.append(f"{indent}    if {child} is not None:")
                sub = node[step]
                if type(sub) is str:
                    lines.append(f"{indent}        out[{sub!r}] = {child}")
                else:
                    emit(sub, child, indent + "        ")

    emit(tree, "v0", "    ")
    lines.append("    return out")
    namespace: dict[str, Any] = {}
    exec("\n".join(lines), namespace)  # generated from validated steps; names and keys via repr()
    read: Callable[[Any], dict[str, Any]] = namespace["read"]
    return read
