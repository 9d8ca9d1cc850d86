"""The registry table: a port (`RegistryStore`) and its DynamoDB adapter (`DynamoRegistry`). The in-memory
fake is `stores.testing.InMemoryRegistry`.

Items cross the port in DynamoDB's typed form (`{"model_name": {"S": "a"}}`), exactly as stored: the
contract's validators read that form (and refuse a malformed typed value by field), so nothing is
converted on the way. Every read is strongly consistent: the sync Lambda never trusts the stream's deltas
and reads the whole table in one scan; the CLI reads and writes `all-models` with a condition; a rollout
step (sync/rollout_step.py, the `rollout` commands) updates a model's item on condition that its
`rollout` is still what was read (`update_if`), so two runners never both apply a step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import ClientError

from stores.tables import ensure_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

Item = dict[str, Any]  # an item in DynamoDB's typed form
KEY = "model_name"


class ConcurrentChangeError(RuntimeError):
    """A conditional write found the attribute changed since it was read."""


class RegistryStore(Protocol):
    def scan(self) -> list[Item]:
        """Every item of the table (paginated, strongly consistent)."""
        ...

    def get(self, name: str) -> Item | None:
        """The item keyed `name` (strongly consistent), or None."""
        ...

    def put(self, item: Item) -> None:
        """Create or replace the item keyed by its `model_name`."""
        ...

    def put_if(self, item: Item, attribute: str, expected: str | None) -> None:
        """Put, only if the stored item's string `attribute` still equals `expected` (None: is absent);
        raises ConcurrentChangeError otherwise, writing nothing."""
        ...

    def update_if(self, name: str, changes: Mapping[str, Any], attribute: str, expected: Any | None) -> None:
        """Set (a typed value) or remove (None) attributes of the existing item keyed `name`, only if its
        `attribute` still equals the typed value `expected` (None: is absent); raises ConcurrentChangeError
        otherwise, or when there is no such item, writing nothing."""
        ...

    def delete(self, name: str) -> None:
        """Delete the item keyed `name` (nothing when there is none)."""
        ...


class DynamoRegistry:
    """The boto3 implementation of `RegistryStore`."""

    def __init__(self, dynamodb: DynamoDBClient, table: str) -> None:
        self.dynamodb = dynamodb
        self.table = table

    def scan(self) -> list[Item]:
        items: list[Item] = []
        for page in self.dynamodb.get_paginator("scan").paginate(TableName=self.table, ConsistentRead=True):
            items.extend(page.get("Items", []))
        return items

    def get(self, name: str) -> Item | None:
        got = self.dynamodb.get_item(TableName=self.table, Key={KEY: {"S": name}}, ConsistentRead=True)
        return got.get("Item")

    def put(self, item: Item) -> None:
        self.dynamodb.put_item(TableName=self.table, Item=item)

    def put_if(self, item: Item, attribute: str, expected: str | None) -> None:
        try:
            if expected is None:
                self.dynamodb.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="attribute_not_exists(#a)",
                    ExpressionAttributeNames={"#a": attribute},
                )
            else:
                self.dynamodb.put_item(
                    TableName=self.table,
                    Item=item,
                    ConditionExpression="#a = :old",
                    ExpressionAttributeNames={"#a": attribute},
                    ExpressionAttributeValues={":old": {"S": expected}},
                )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentChangeError(f"{attribute} changed since it was read") from None
            raise

    def update_if(self, name: str, changes: Mapping[str, Any], attribute: str, expected: Any | None) -> None:
        names: dict[str, str] = {"#k": KEY, "#c": attribute}
        values: dict[str, Any] = {}
        sets, removes = [], []
        for i, (key, value) in enumerate(sorted(changes.items())):
            names[f"#a{i}"] = key
            if value is None:
                removes.append(f"#a{i}")
            else:
                values[f":v{i}"] = value
                sets.append(f"#a{i} = :v{i}")
        clauses = [("SET", sets), ("REMOVE", removes)]
        expression = " ".join(f"{verb} {', '.join(parts)}" for verb, parts in clauses if parts)
        if expected is None:
            condition = "attribute_exists(#k) AND attribute_not_exists(#c)"
        else:
            condition = "attribute_exists(#k) AND #c = :old"
            values[":old"] = expected
        given: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}  # never empty
        try:
            self.dynamodb.update_item(
                TableName=self.table,
                Key={KEY: {"S": name}},
                UpdateExpression=expression,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **given,
            )
        except ClientError as exc:
            if exc.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConcurrentChangeError(
                    f"{name}: the item or its {attribute} changed meanwhile"
                ) from None
            raise

    def delete(self, name: str) -> None:
        self.dynamodb.delete_item(TableName=self.table, Key={KEY: {"S": name}})


def _changed(name: str, attribute: str) -> str:
    return f"{name}: the item or its {attribute} changed meanwhile"


def create_table(dynamodb: DynamoDBClient, table: str) -> None:
    """Create the registry table with its stream when missing (the local stack and tests; CloudFormation
    creates it on AWS)."""
    ensure_table(dynamodb, table, KEY, stream=True)
