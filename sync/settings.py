"""Names and limits the sync side needs (same variables in Lambda and locally).

The same kind of settings class as the shell's (sagemaker_fastchat/settings.py): the Lambda has no shell,
so its entry point (sync.handler.lambda_handler) builds this one from the environment; nothing else in
sync/ reads it.
"""

from __future__ import annotations

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contract.snapshot import DEFAULT_PREFIX, validate_prefix
from stores.rollout_metrics import DEFAULT_TABLE as DEFAULT_METRICS_TABLE

DEFAULT_TABLE = "sagemaker-fastchat-models"


class SyncSettings(BaseSettings):
    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, env_ignore_empty=True)

    table_name: str = Field(
        default=DEFAULT_TABLE, validation_alias="REGISTRY_TABLE", description="registry table"
    )
    ssm_prefix: str = Field(
        default=DEFAULT_PREFIX, validation_alias="SSM_PREFIX", description="where the sync publishes"
    )
    rollout_metrics_table: str = Field(
        default=DEFAULT_METRICS_TABLE,
        validation_alias="ROLLOUT_METRICS_TABLE",
        description="the rollout's outcome counts (sync/rollout_step.py)",
    )
    endpoint_check: bool = Field(
        default=False,
        validation_alias="SYNC_ENDPOINT_CHECK",
        description="DescribeEndpoint before publishing (sync/endpoint_gate.py)",
    )

    @field_validator("ssm_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return validate_prefix(value)
