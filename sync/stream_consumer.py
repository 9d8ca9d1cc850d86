"""A stand-in for Lambda's DynamoDB Streams event source mapping (used by the local stack).

It reads the table's stream with the DynamoDB Streams API (describe_stream, get_shard_iterator,
get_records, following new shards as they appear) and calls the same handler the Lambda runs, with
Lambda-shaped events. A batch the handler reports as failed (a transient error) is delivered again,
after a delay that doubles with each consecutive failure of its shard (RETRY_BASE up to RETRY_MAX).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient
    from mypy_boto3_dynamodbstreams.literals import ShardIteratorTypeType
    from mypy_boto3_dynamodbstreams.type_defs import ShardTypeDef

log = structlog.get_logger("stream-consumer")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
RETRY_BASE = 0.5  # seconds before a failed batch is delivered again
RETRY_MAX = 30.0


class StreamConsumer:
    def __init__(
        self,
        dynamodb: DynamoDBClient,
        streams: DynamoDBStreamsClient,
        table_name: str,
        handler: Handler,
        *,
        batch_size: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dynamodb = dynamodb
        self.streams = streams
        self.table_name = table_name
        self.handler = handler
        self.batch_size = batch_size
        self._iterators: dict[str, str | None] = {}  # shard id -> next iterator (None: shard closed)
        self._arn: str | None = None
        self.clock = clock
        self._failures: dict[str, int] = {}  # shard id -> consecutive failed deliveries
        self._retry_at: dict[str, float] = {}  # shard id -> clock time before which it is not retried

    def stream_arn(self) -> str:
        if self._arn is None:
            table = self.dynamodb.describe_table(TableName=self.table_name)["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise RuntimeError(f"table {self.table_name} has no stream; enable NEW_AND_OLD_IMAGES")
            self._arn = str(arn)
        return self._arn

    def _shards(self) -> list[ShardTypeDef]:
        shards: list[ShardTypeDef] = []
        start: str | None = None
        while True:
            kwargs: dict[str, Any] = {"StreamArn": self.stream_arn()}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            desc = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(desc.get("Shards", []))
            start = desc.get("LastEvaluatedShardId")
            if not start:
                return shards

    def start_at_latest(self) -> None:
        """Skip what the stream already holds (the caller syncs the table's current state itself)."""
        for shard in self._shards():
            self._iterators[shard["ShardId"]] = self._iterator(shard["ShardId"], "LATEST")

    def _iterator(self, shard_id: str, kind: ShardIteratorTypeType) -> str:
        return str(
            self.streams.get_shard_iterator(
                StreamArn=self.stream_arn(), ShardId=shard_id, ShardIteratorType=kind
            )["ShardIterator"]
        )

    def poll_once(self) -> int:
        """Deliver every available batch once; returns how many records the handler accepted."""
        for shard in self._shards():
            if shard["ShardId"] not in self._iterators:  # a new shard: read it from its start
                self._iterators[shard["ShardId"]] = self._iterator(shard["ShardId"], "TRIM_HORIZON")
        delivered = 0
        for shard_id, iterator in list(self._iterators.items()):
            if iterator is None or self.clock() < self._retry_at.get(shard_id, 0.0):
                continue
            response = self.streams.get_records(ShardIterator=iterator, Limit=self.batch_size)
            records = response.get("Records", [])
            if records:
                event = {"Records": [{**r, "eventSourceARN": self.stream_arn()} for r in records]}
                result = self.handler(event, None)
                if result.get("batchItemFailures"):
                    failures = self._failures[shard_id] = self._failures.get(shard_id, 0) + 1
                    delay = min(RETRY_BASE * 2 ** (failures - 1), RETRY_MAX)
                    self._retry_at[shard_id] = self.clock() + delay
                    log.warning(
                        "batch_failed_will_retry", shard=shard_id, records=len(records), retry_in=delay
                    )
                    # Re-read the same records next time, from the first failed one.
                    failed = result["batchItemFailures"][0]["itemIdentifier"]
                    self._iterators[shard_id] = str(
                        self.streams.get_shard_iterator(
                            StreamArn=self.stream_arn(),
                            ShardId=shard_id,
                            ShardIteratorType="AT_SEQUENCE_NUMBER",
                            SequenceNumber=failed,
                        )["ShardIterator"]
                    )
                    continue
                delivered += len(records)
                self._failures.pop(shard_id, None)
                self._retry_at.pop(shard_id, None)
            self._iterators[shard_id] = response.get("NextShardIterator")
        return delivered

    def run(self, stop: threading.Event, interval: float = 0.25) -> None:
        """Poll until `stop` is set; errors are logged and retried with backoff, never fatal."""
        backoff = interval
        while not stop.is_set():
            try:
                self.poll_once()
                backoff = interval
            except Exception:
                log.exception("stream_poll_failed", retry_in=backoff)
                backoff = min(backoff * 2, 10.0)
            stop.wait(backoff)
