"""Registry items arrive plain (boto3 resource, JSON files) or in DynamoDB's typed form (stream images,
low-level client). Normalize both to plain Python values; and the other way, a plain item in the seed's
stored form (`to_typed_item`).

Total: a value that is not a well-formed typed value (`{"N": "abc"}`, `{"M": 5}`), or an item nested too
deeply to walk, is left as it is (the spec validator then refuses it by field, with the reason).
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from contract.json_shape import depth_exceeds

_TYPE_TAGS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
_deserializer = TypeDeserializer()
# Deeper items are left untouched (deserializing recurses); the spec validator refuses them.
MAX_UNTYPE_DEPTH = 64
# Integral Decimals up to this many digits become int; beyond, float (int() of 1E+999999999 never ends).
_MAX_INT_DIGITS = 19


def is_typed_value(value: object) -> bool:
    """True for a DynamoDB attribute value such as {"S": "x"} or {"M": {...}}."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPE_TAGS


def is_typed_item(item: dict[str, Any]) -> bool:
    """An item is typed when every attribute is a typed value (a stream image or a client get_item)."""
    return bool(item) and all(is_typed_value(v) for v in item.values())


def _number(value: Decimal) -> int | float:
    if value.is_nan():
        return float("nan")  # float(Decimal("sNaN")) raises; the validator refuses NaN either way
    if value.is_finite() and value.adjusted() < _MAX_INT_DIGITS and value == value.to_integral_value():
        return int(value)
    return float(value)


def plain(value: Any) -> Any:
    """Decimals (what boto3 returns for numbers) become int or float, recursively."""
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


def untype_item_checked(item: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The item as plain values, and why each attribute that could not be read was kept as it is."""
    if depth_exceeds(item, MAX_UNTYPE_DEPTH):
        return dict(item), {}
    typed = is_typed_item(item)
    out: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for key, value in item.items():
        if typed or is_typed_value(value):
            try:
                out[key] = plain(_deserializer.deserialize(value))
            except (TypeError, ValueError, AttributeError, ArithmeticError, KeyError) as exc:
                out[key] = value
                errors[key] = f"is not a well-formed DynamoDB typed value ({type(exc).__name__})"
        else:
            out[key] = plain(value)
    return out, errors


def untype_item(item: dict[str, Any]) -> dict[str, Any]:
    """Return the item as plain values, whatever form it came in."""
    return untype_item_checked(item)[0]


def to_typed_value(value: Any) -> dict[str, Any]:
    """A plain value in the seed's stored form: strings as S, numbers as N, booleans as BOOL, objects and
    lists (the config, `variants`, `rollout`) as JSON strings."""
    if isinstance(value, dict | list):
        return {"S": json.dumps(value, ensure_ascii=False)}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return {"N": str(value)}
    return {"S": str(value)}


def to_typed_item(item: dict[str, Any]) -> dict[str, Any]:
    """A plain registry item in the seed's stored form (attributes set to None are left out)."""
    return {key: to_typed_value(value) for key, value in item.items() if value is not None}
