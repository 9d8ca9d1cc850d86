"""structlog configuration shared by every process (Lambda, worker, CLI, local stack).

One JSON object per line with timestamp, level and event, plus `trace_id` when a trace is active;
human-readable console output when stderr is a terminal. Standard-library logging (FastChat, uvicorn,
botocore) is routed through the same processors. Our code never logs prompt or completion text.
See docs/design.md "Observability"; tests check events with structlog's `structlog.testing.capture_logs`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from telemetry.tracing import current_trace_id  # the span context only: the X-Ray SDK loads lazily


def add_trace_id(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: the current span's trace id, unless the event already names one."""
    trace_id = current_trace_id()
    if trace_id and "trace_id" not in event:
        event["trace_id"] = trace_id
    return event


_last: tuple[str, str | None] = ("INFO", None)  # what configure_logging was last given


def configure_logging(level: str = "INFO", log_format: str | None = None) -> None:
    """Configure structlog and the standard library's root logger (idempotent). `level` and `log_format`
    are LOG_LEVEL and LOG_FORMAT's values (`telemetry.settings.TelemetrySettings`): `json` gives JSON
    lines, anything else console output; None: JSON unless stderr is a terminal."""
    global _last  # noqa: PLW0603 - the process's one logging configuration, as structlog's own
    _last = (level, log_format)
    level = level.upper()
    json_output = (log_format or ("json" if not sys.stderr.isatty() else "console")) == "json"
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        add_trace_id,
    ]
    renderer: Any = structlog.processors.JSONRenderer() if json_output else structlog.dev.ConsoleRenderer()
    # The same list instance, refilled: loggers cached on first use hold it, so a second call (the worker's
    # FastChat shims reconfigure) and structlog.testing.capture_logs reach them too.
    processors = structlog.get_config()["processors"]
    processors[:] = [*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter]
    structlog.configure(
        processors=processors,
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.captureWarnings(True)  # Python warnings become log events too (one format for every line)
    for noisy in ("botocore", "urllib3", "httpx", "aws_xray_sdk"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def reconfigure_logging() -> None:
    """configure_logging again with what it was last given (after FastChat took stdout and stderr over:
    runtime/fastchat_compat.py's shim 2), so the process keeps its settings without reading them again."""
    configure_logging(*_last)
