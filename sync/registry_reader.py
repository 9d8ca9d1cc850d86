"""Reads the whole registry table: paginated, strongly consistent (the Lambda never trusts deltas)."""

from __future__ import annotations

from typing import Any


def scan_registry(dynamodb: Any, table_name: str) -> list[dict[str, Any]]:
    """Every item of the table, in DynamoDB's typed form."""
    items: list[dict[str, Any]] = []
    paginator = dynamodb.get_paginator("scan")
    for page in paginator.paginate(TableName=table_name, ConsistentRead=True):
        items.extend(page.get("Items", []))
    return items
