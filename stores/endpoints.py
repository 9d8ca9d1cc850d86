"""DescribeEndpoint through boto3: the adapter of `contract.endpoints.EndpointChecker` (whose verdicts
are pure and whose in-memory fake is `contract.endpoints.FakeEndpointChecker`)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from contract.endpoints import EndpointVerdict, verdict_from_description, verdict_from_error

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

DESCRIBE_TIMEOUT = 3.0  # seconds per DescribeEndpoint attempt (connect and read)


def sagemaker_client(timeout: float = DESCRIBE_TIMEOUT) -> SageMakerClient:
    """A `sagemaker` (control plane) client with short timeouts and one retry: a check is bounded to a
    few seconds. Endpoint URL from botocore's usual sources (AWS_ENDPOINT_URL_SAGEMAKER locally)."""
    config = Config(
        connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 2, "mode": "standard"}
    )
    return boto3.client("sagemaker", config=config)


class Boto3EndpointChecker:
    """DescribeEndpoint through a boto3 `sagemaker` client (thread-safe: checks may run concurrently).
    Without a client, one is made by `sagemaker_client()` at the first check, so a process without AWS
    configuration (no region) still starts and reports why it cannot check."""

    def __init__(self, client: SageMakerClient | None = None) -> None:
        self.client = client
        self._lock = threading.Lock()

    def check(self, endpoint: str) -> EndpointVerdict:
        try:
            with self._lock:
                self.client = self.client or sagemaker_client()
            response = self.client.describe_endpoint(EndpointName=endpoint)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            return verdict_from_error(
                endpoint, str(error.get("Code", "Unknown")), str(error.get("Message", ""))
            )
        except BotoCoreError as exc:  # timeouts, connection errors, no credentials
            return EndpointVerdict(False, f"cannot check endpoint {endpoint}: {exc}", transient=True)
        return verdict_from_description(endpoint, response)
