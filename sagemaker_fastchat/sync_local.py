"""`sagemaker-fastchat sync-local`: the stream consumer + the real sync handler, for the local stack.

Lambda's event source mapping is not available without AWS, so this process plays its part: it follows
the table's DynamoDB stream and calls the same handler the Lambda runs, with Lambda-shaped events.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from typing import Any

import boto3
import structlog

from sagemaker_fastchat.settings import add_flags, settings_from
from sync.handler import SYNC_SERVICE, SyncHandler, endpoint_checker
from sync.settings import SyncSettings
from sync.stream_consumer import StreamConsumer
from telemetry.settings import TelemetrySettings

log = structlog.get_logger("sync-local")


def register(sub: Any) -> None:
    p = sub.add_parser("sync-local", help="follow the registry's DynamoDB stream and run the sync handler")
    p.add_argument("--interval", type=float, default=0.25, help="seconds between stream polls")
    add_flags(p, SyncSettings)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    settings, telemetry = settings_from(args, SyncSettings), TelemetrySettings()
    telemetry.configure_logging()
    dynamodb = boto3.client("dynamodb")
    handler = SyncHandler.from_clients(
        dynamodb,
        boto3.client("ssm"),
        settings,
        endpoint_checker(settings),
        telemetry.tracer(SYNC_SERVICE),
    )
    consumer = StreamConsumer(dynamodb, boto3.client("dynamodbstreams"), settings.table_name, handler)
    consumer.start_at_latest()  # first mark where the stream is, then publish the table as it is now
    handler.sync()
    log.info("following_stream", table=settings.table_name, prefix=settings.ssm_prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        consumer.run(stop, args.interval)
    return 0
