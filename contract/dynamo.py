"""Registry items arrive plain (boto3 resource, JSON files) or in DynamoDB's typed form (stream images,
low-level client). Normalize both to plain Python values."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

_TYPE_TAGS = frozenset({"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"})
_deserializer = TypeDeserializer()


def is_typed_value(value: object) -> bool:
    """True for a DynamoDB attribute value such as {"S": "x"} or {"M": {...}}."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPE_TAGS


def is_typed_item(item: dict[str, Any]) -> bool:
    """An item is typed when every attribute is a typed value (a stream image or a client get_item)."""
    return bool(item) and all(is_typed_value(v) for v in item.values())


def plain(value: Any) -> Any:
    """Decimals (what boto3 returns for numbers) become int or float, recursively."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain(v) for v in value]
    return value


def untype_item(item: dict[str, Any]) -> dict[str, Any]:
    """Return the item as plain values, whatever form it came in."""
    if is_typed_item(item):
        return {k: plain(_deserializer.deserialize(v)) for k, v in item.items()}
    return {
        k: plain(_deserializer.deserialize(v)) if is_typed_value(v) else plain(v) for k, v in item.items()
    }
