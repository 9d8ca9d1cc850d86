"""Outcome counts per (model, variant, minute): workers add, the rollout step runner reads (issue 17).

A port (`OutcomeStore`), its DynamoDB adapter and (in stores/testing.py) an in-memory fake.

Table layout (one small table, on-demand): partition key `model` (the model name), sort key `slot`
(`<epoch minute, 10 digits>#<variant endpoint name>`), so one Query reads every variant of a model since
a minute. Each item holds `requests`, `errors` and one `h<bucket>` counter per TTFT histogram bucket
(rollout/histogram.py), all moved by atomic ADDs (UpdateItem), so any number of workers add to the same
item without reading it first; `expires` (epoch seconds, the table's TTL attribute) lets DynamoDB drop
items after TTL_SECONDS.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from botocore.exceptions import BotoCoreError, ClientError

from rollout.histogram import BUCKETS
from stores.tables import ensure_table

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

TTL_SECONDS = 7 * 86_400
ENV_TABLE = "ROLLOUT_METRICS_TABLE"  # empty or unset: no recording
DEFAULT_TABLE = "sagemaker-fastchat-rollout-metrics"
_SLOT_DIGITS = 10


@dataclass(frozen=True)
class OutcomeCounts:
    """What one or more workers saw for one variant of one model in one minute."""

    model: str
    variant: str  # endpoint name
    minute: int  # epoch minute: int(time // 60)
    requests: int
    errors: int  # endpoint-side failures only (not invalid requests, not client cancels)
    ttft_hist: Mapping[int, int] = field(default_factory=dict)  # histogram bucket -> successful first tokens


class OutcomesUnavailable(Exception):
    """The store cannot be reached right now. `applied`: how many leading counts of the batch were
    added before the failure (retry the rest only, or they would count twice)."""

    def __init__(self, reason: str, applied: int = 0) -> None:
        super().__init__(reason)
        self.applied = applied


class OutcomeStore(Protocol):
    def add(self, counts: Sequence[OutcomeCounts]) -> None:
        """Add each count to its (model, variant, minute) totals, atomically per item; raises
        OutcomesUnavailable (with how many were applied) when the store cannot be reached."""
        ...

    def read(self, model: str, since_minute: int) -> list[OutcomeCounts]:
        """The totals of every variant of `model` for each minute from `since_minute` on, oldest first;
        raises OutcomesUnavailable when the store cannot be reached."""
        ...


def slot(minute: int, variant: str) -> str:
    return f"{minute:0{_SLOT_DIGITS}d}#{variant}"


def merge(counts: Sequence[OutcomeCounts]) -> dict[str, OutcomeCounts]:
    """Totals per variant over all the minutes given (minute: the earliest)."""
    out: dict[str, OutcomeCounts] = {}
    for c in counts:
        prev = out.get(c.variant)
        if prev is None:
            out[c.variant] = c
            continue
        hist = dict(prev.ttft_hist)
        for bucket, n in c.ttft_hist.items():
            hist[bucket] = hist.get(bucket, 0) + n
        out[c.variant] = OutcomeCounts(
            c.model,
            c.variant,
            min(prev.minute, c.minute),
            prev.requests + c.requests,
            prev.errors + c.errors,
            hist,
        )
    return out


def _update(table: str, c: OutcomeCounts) -> dict[str, Any]:
    names = {"#r": "requests", "#e": "errors", "#x": "expires", "#v": "variant", "#m": "minute"}
    values: dict[str, Any] = {
        ":r": {"N": str(max(0, c.requests))},  # counters only grow
        ":e": {"N": str(max(0, c.errors))},
        ":x": {"N": str((c.minute + 1) * 60 + TTL_SECONDS)},
        ":v": {"S": c.variant},
        ":m": {"N": str(c.minute)},
    }
    adds = ["#r :r", "#e :e"]
    for bucket, n in sorted(c.ttft_hist.items()):
        if 0 <= bucket < BUCKETS and n > 0:
            names[f"#h{bucket}"] = f"h{bucket}"
            values[f":h{bucket}"] = {"N": str(n)}
            adds.append(f"#h{bucket} :h{bucket}")
    return {
        "TableName": table,
        "Key": {"model": {"S": c.model}, "slot": {"S": slot(c.minute, c.variant)}},
        "UpdateExpression": f"ADD {', '.join(adds)} SET #x = :x, #v = :v, #m = :m",
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


def _counts_of(model: str, item: Mapping[str, Any]) -> OutcomeCounts | None:
    """One stored item as counts; None for an item that is not ours (a hand-written one, say)."""
    try:
        minute_text, _, variant = item["slot"]["S"].partition("#")
        hist = {
            int(key[1:]): int(value["N"])
            for key, value in item.items()
            if key[:1] == "h" and key[1:].isdigit() and "N" in value
        }
        return OutcomeCounts(
            model,
            variant,
            int(minute_text),
            int(item.get("requests", {}).get("N", "0")),
            int(item.get("errors", {}).get("N", "0")),
            hist,
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class DynamoOutcomeStore:
    """OutcomeStore on DynamoDB (a low-level boto3 client)."""

    def __init__(self, table_name: str, client: DynamoDBClient) -> None:
        self.table_name = table_name
        self.client = client

    def add(self, counts: Sequence[OutcomeCounts]) -> None:
        for applied, c in enumerate(counts):
            if c.requests <= 0 and c.errors <= 0 and not c.ttft_hist:
                continue
            try:
                self.client.update_item(**_update(self.table_name, c))
            except Exception as exc:  # any failure says how many were applied (the caller retries the rest)
                raise OutcomesUnavailable(f"{type(exc).__name__}: {exc}", applied) from exc

    def read(self, model: str, since_minute: int) -> list[OutcomeCounts]:
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table_name,
            KeyConditionExpression="#k = :k AND #s >= :s",
            ExpressionAttributeNames={"#k": "model", "#s": "slot"},
            ExpressionAttributeValues={
                ":k": {"S": model},
                ":s": {"S": f"{max(0, since_minute):0{_SLOT_DIGITS}d}"},
            },
        )
        try:
            items = [item for page in pages for item in page.get("Items", [])]
        except (BotoCoreError, ClientError) as exc:
            raise OutcomesUnavailable(str(exc)) from exc
        found = (_counts_of(model, item) for item in items)
        return [c for c in found if c is not None]


def create_table(client: DynamoDBClient, table_name: str) -> None:
    """Create the table with its TTL when missing (the local stack; CloudFormation does it on AWS)."""
    ensure_table(client, table_name, "model", "slot", ttl_attribute="expires")
