"""Creating a store's DynamoDB table when it is missing: what the local stack and the tests need
(CloudFormation creates the tables on AWS). Every table of ours has string keys and is billed on demand."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.literals import KeyTypeType


def ensure_table(
    dynamodb: DynamoDBClient,
    name: str,
    hash_key: str,
    range_key: str | None = None,
    *,
    stream: bool = False,
    ttl_attribute: str | None = None,
) -> None:
    """Create table `name` keyed by `hash_key` (and `range_key`) unless it exists, with a stream of new
    and old images when `stream`, and items expiring at their `ttl_attribute` when given (also turned on
    for a table created earlier without it)."""
    if name in dynamodb.list_tables().get("TableNames", []):
        if ttl_attribute:
            ttl = dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                _enable_ttl(dynamodb, name, ttl_attribute)
        return
    keys: list[tuple[str, KeyTypeType]] = [(hash_key, "HASH")]
    if range_key:
        keys.append((range_key, "RANGE"))
    extra: dict[str, Any] = {}
    if stream:
        extra["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    dynamodb.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": key, "KeyType": kind} for key, kind in keys],
        AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"} for key, _ in keys],
        BillingMode="PAY_PER_REQUEST",
        **extra,
    )
    if ttl_attribute:
        _enable_ttl(dynamodb, name, ttl_attribute)


def _enable_ttl(dynamodb: DynamoDBClient, name: str, attribute: str) -> None:
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute}
    )
