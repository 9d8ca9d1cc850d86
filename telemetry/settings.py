"""Telemetry's settings: the logging and X-Ray variables every process reads (docs/design.md "Code layout").

The same kind of settings class as the shell's (sagemaker_fastchat/settings.py) and the sync's
(sync/settings.py): the shell builds it for each command that logs or traces, the Lambda entry points
(which have no shell) build it themselves, and the values are handed to `configure_logging` and `Tracer`,
which never read the environment.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from telemetry.logs import configure_logging
from telemetry.tracing import DEFAULT_DAEMON_ADDRESS, DEFAULT_SAMPLING_RATE, Emitter, Tracer, UdpEmitter


class TelemetrySettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, env_ignore_empty=True)

    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL", description="our log level")
    log_format: str | None = Field(
        default=None,
        validation_alias="LOG_FORMAT",
        description="json or console (default: json, console when stderr is a terminal)",
    )
    xray_enabled: bool = Field(
        default=True, validation_alias="XRAY_ENABLED", description="false makes tracing a cheap no-op"
    )
    xray_sampling_rate: float = Field(
        default=DEFAULT_SAMPLING_RATE,
        validation_alias="XRAY_SAMPLING_RATE",
        description="share of new traces recorded (an upstream Sampled= decision is honoured)",
    )
    xray_daemon_address: str = Field(
        default=DEFAULT_DAEMON_ADDRESS,
        validation_alias="AWS_XRAY_DAEMON_ADDRESS",
        description="the X-Ray daemon (UDP host:port)",
    )

    @field_validator("xray_enabled", mode="before")
    @classmethod
    def _enabled(cls, value: Any) -> Any:
        # As it always was: only an explicit no (0, false, no, off) turns tracing off.
        if isinstance(value, str):
            return value.strip().lower() not in ("0", "false", "no", "off")
        return value

    def configure_logging(self) -> None:
        configure_logging(self.log_level, self.log_format)

    def tracer(self, service: str, emitter: Emitter | None = None) -> Tracer:
        """A tracer for `service` with these settings (its segments to the daemon unless `emitter`)."""
        return Tracer(
            service,
            emitter if emitter is not None else UdpEmitter(self.xray_daemon_address),
            enabled=self.xray_enabled,
            rate=self.xray_sampling_rate,
        )


class LambdaInvocation(BaseSettings):
    """What the Lambda runtime sets in the environment for each invocation: built per invocation, not
    once per process like TelemetrySettings, because `_X_AMZN_TRACE_ID` (active tracing's header, so our
    segment becomes a child of the function's own) changes with every invocation."""

    model_config = SettingsConfigDict(frozen=True, env_ignore_empty=True)

    trace_header: str | None = Field(default=None, validation_alias="_X_AMZN_TRACE_ID")
