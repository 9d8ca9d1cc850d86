"""Telemetry's settings (telemetry/settings.py): the variables, their defaults, and where their values go
(loggers and tracers take values; only the settings classes read the environment)."""

from __future__ import annotations

import logging

import pytest
from pydantic import ValidationError

import sync.handler
from sagemaker_fastchat import cli
from stores.ssm import SnapshotWriter
from stores.testing import InMemoryParameters, InMemoryRegistry
from sync.handler import SyncHandler
from sync.settings import SyncSettings
from telemetry.logs import configure_logging, reconfigure_logging
from telemetry.settings import LambdaInvocation, TelemetrySettings
from telemetry.testing import recording_tracer, sent
from telemetry.tracing import UdpEmitter

VARIABLES = (
    "LOG_LEVEL",
    "LOG_FORMAT",
    "XRAY_ENABLED",
    "XRAY_SAMPLING_RATE",
    "AWS_XRAY_DAEMON_ADDRESS",
    "_X_AMZN_TRACE_ID",
)
HEADER = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)


def test_defaults() -> None:
    settings = TelemetrySettings()
    assert (settings.log_level, settings.log_format) == ("INFO", None)
    tracer = settings.tracer("svc")
    assert (tracer.service, tracer.enabled, tracer.rate) == ("svc", True, 0.05)
    assert isinstance(tracer.emitter, UdpEmitter)
    assert tracer.emitter.address == "127.0.0.1:2000"
    assert LambdaInvocation().trace_header is None


def test_variables_reach_the_tracer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_SAMPLING_RATE", "1")
    monkeypatch.setenv("AWS_XRAY_DAEMON_ADDRESS", "10.0.0.1:2001")
    tracer = TelemetrySettings().tracer("svc")
    assert tracer.rate == 1.0
    assert isinstance(tracer.emitter, UdpEmitter)
    assert tracer.emitter.address == "10.0.0.1:2001"


@pytest.mark.parametrize(
    ("value", "enabled"),
    [("false", False), ("0", False), (" Off ", False), ("no", False), ("true", True), ("yes please", True)],
)
def test_only_an_explicit_no_turns_tracing_off(
    monkeypatch: pytest.MonkeyPatch, value: str, enabled: bool
) -> None:
    monkeypatch.setenv("XRAY_ENABLED", value)
    tracer = TelemetrySettings().tracer("svc")
    assert tracer.enabled is enabled


def test_a_bad_variable_names_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XRAY_SAMPLING_RATE", "often")
    with pytest.raises(ValidationError) as raised:
        TelemetrySettings()
    assert raised.value.errors()[0]["loc"] == ("XRAY_SAMPLING_RATE",)


def test_a_command_stops_on_a_bad_variable_before_it_starts(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sync-local` with a telemetry variable that does not parse: one line, exit 2, nothing started."""
    monkeypatch.setenv("XRAY_SAMPLING_RATE", "often")
    assert cli.main(["sync-local"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: XRAY_SAMPLING_RATE: ")


def test_logging_takes_the_settings_values_and_keeps_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOG_LEVEL", "warning")
    try:
        TelemetrySettings().configure_logging()
        assert logging.getLogger().level == logging.WARNING
        monkeypatch.setenv("LOG_LEVEL", "DEBUG")  # not read again: FastChat's shim 2 reapplies the values
        reconfigure_logging()
        assert logging.getLogger().level == logging.WARNING
    finally:
        configure_logging()


def _sync_handler() -> SyncHandler:
    return SyncHandler(
        InMemoryRegistry(),
        SnapshotWriter(InMemoryParameters(), "/p"),
        SyncSettings(table_name="t", ssm_prefix="/p"),
        tracer=recording_tracer("sync"),
    )


def test_the_sync_lambda_joins_each_invocations_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    """In Lambda (active tracing) the sync's segment is a child of the invocation's own, whose header
    the runtime sets in `_X_AMZN_TRACE_ID` anew for every invocation."""
    handler = _sync_handler()
    monkeypatch.setattr(sync.handler, "_handler", handler)
    monkeypatch.setenv("_X_AMZN_TRACE_ID", HEADER)
    assert sync.handler.lambda_handler({"Records": []}, None) == {"batchItemFailures": []}
    other = "Root=1-5759e988-00000000000000000000000a;Parent=0000000000000001;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", other)
    sync.handler.lambda_handler({"Records": []}, None)
    first, second = sent(handler.tracer)
    assert (first["trace_id"], first["parent_id"]) == (
        "1-5759e988-bd862e3fe1be46a994272793",
        "53995c3f42cd8ad8",
    )
    assert (second["trace_id"], second["parent_id"]) == (
        "1-5759e988-00000000000000000000000a",
        "0000000000000001",
    )


def test_outside_lambda_the_sync_starts_its_own_trace() -> None:
    handler = _sync_handler()
    handler({"Records": []})
    (segment,) = sent(handler.tracer)
    assert "parent_id" not in segment
