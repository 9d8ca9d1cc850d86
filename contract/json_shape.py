"""Bounds on JSON-like values from the registry, checked without recursion (pure).

Registry items come from DynamoDB, files and Python callers; a hostile one can nest 100,000 levels deep,
hold a lone surrogate (not encodable as UTF-8), NaN, a 10,000-digit number or a non-string key. Every
recursive step after this one (DynamoDB deserialization, json.dumps, deepcopy, hashing) would raise
something other than a validation error on such input, so this walk runs first, with an explicit stack.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import Binary

MAX_JSON_INT = 2**63 - 1  # what orjson (the worker's encoder) writes; JSON parsers lose precision past 2**53
_MAX_KEY_IN_PATH = 40


def key_label(key: object) -> str:
    """A mapping key as it is shown in a dotted field path (odd keys are shown by a truncated repr)."""
    if isinstance(key, str) and key.isprintable() and 0 < len(key) <= _MAX_KEY_IN_PATH and "." not in key:
        return key
    return short_repr(key)


def short_repr(value: object, limit: int = _MAX_KEY_IN_PATH) -> str:
    """repr() cut to `limit` characters: problems quote user values without echoing a megabyte."""
    try:
        text = repr(value)
    except Exception:  # a Python caller's object with a broken __repr__
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def join_path(parent: str, key: object) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key_label(key)}" if parent else key_label(key)


def _children(value: Any) -> Iterator[tuple[object, Any]] | None:
    if isinstance(value, Mapping):
        return iter(value.items())
    if isinstance(value, list | tuple):
        return enumerate(value)
    if isinstance(value, set | frozenset):  # DynamoDB's SS / NS / BS
        return enumerate(value)
    return None


def _scalar_problem(value: Any, strict: bool) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value.encode()
        except UnicodeEncodeError:
            return "holds a lone surrogate: not valid Unicode text"
        return None
    if isinstance(value, int):
        return None if -MAX_JSON_INT <= value <= MAX_JSON_INT else "is a number beyond 64 bits"
    if isinstance(value, float):
        return None if math.isfinite(value) else f"is {value!r}: NaN and Infinity are not JSON"
    if not strict and isinstance(value, Decimal):
        if not value.is_finite():
            return f"is {value}: NaN and Infinity are not JSON"
        return None if value.adjusted() <= 300 else "is a number too large for JSON"
    if not strict and isinstance(value, bytes | bytearray | Binary):
        return None
    return f"is {short_repr(value)}, not a JSON value"


def shape_problem(
    value: Any, *, path: str, max_depth: int, max_nodes: int, max_chars: int, strict: bool
) -> tuple[str, str] | None:
    """(dotted path, why) of the first bound `value` breaks, or None.

    Depth counts nested objects and arrays (a scalar is 0 deep, `{"a": 1}` is 1). `max_chars` bounds the
    characters of every string and key together. With `strict`, only JSON values are accepted; without,
    what DynamoDB and boto3 also hold (Decimal, binary, sets) passes too. Keys must be strings.
    """
    nodes = 0
    chars = 0
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        node, where, depth = stack.pop()
        nodes += 1
        if nodes > max_nodes:
            return where, f"holds more than {max_nodes} values; the limit is {max_nodes}"
        children = _children(node)
        if children is None:
            problem = _scalar_problem(node, strict)
            if problem:
                return where, problem
            if isinstance(node, str):
                chars += len(node)
                if chars > max_chars:
                    return where, f"holds more than {max_chars} characters of text; the limit is {max_chars}"
            continue
        if strict and isinstance(node, tuple | set | frozenset):
            return where, f"is {short_repr(node)}, not a JSON value"
        if depth + 1 > max_depth:
            return where, f"nests deeper than {max_depth} levels of objects and arrays"
        is_object = isinstance(node, Mapping)
        for key, child in children:
            if is_object:
                if not isinstance(key, str):
                    return where, f"has the key {short_repr(key)}: keys must be strings"
                problem = _scalar_problem(key, strict=True)
                if problem:
                    return join_path(where, key), f"the key {problem}"
                chars += len(key)
                if chars > max_chars:
                    return where, f"holds more than {max_chars} characters of text; the limit is {max_chars}"
            stack.append((child, join_path(where, key), depth + 1))
    return None


def depth_exceeds(value: Any, limit: int) -> bool:
    """True when `value` nests objects and arrays more than `limit` levels deep (no recursion)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        children = _children(node)
        if children is None:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for _, child in children)
    return False
