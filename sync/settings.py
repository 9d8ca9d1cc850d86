"""Names and limits the sync side needs, from the environment (same names in Lambda and locally)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from contract.snapshot import DEFAULT_PREFIX, validate_prefix

DEFAULT_TABLE = "sagemaker-fastchat-models"


@dataclass(frozen=True)
class SyncSettings:
    table_name: str = DEFAULT_TABLE
    ssm_prefix: str = DEFAULT_PREFIX
    endpoint_check: bool = False  # DescribeEndpoint before publishing (sync/endpoint_gate.py)

    @classmethod
    def from_env(cls) -> SyncSettings:
        return cls(
            table_name=os.environ.get("REGISTRY_TABLE", DEFAULT_TABLE),
            ssm_prefix=validate_prefix(os.environ.get("SSM_PREFIX", DEFAULT_PREFIX)),
            endpoint_check=os.environ.get("SYNC_ENDPOINT_CHECK", "false").strip().lower()
            in ("1", "true", "yes", "on"),
        )
