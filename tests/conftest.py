"""Fixtures shared by every layer of tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

# Tests never assert timings: hypothesis's per-example deadline (200 ms) and its too-slow health check
# fail property tests at random on a loaded 2-core CI machine. Each test's own @settings still applies.
hypothesis_settings.register_profile("untimed", deadline=None, suppress_health_check=[HealthCheck.too_slow])
hypothesis_settings.load_profile("untimed")

# Never talk to real AWS from tests, whatever the machine's environment holds.
os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
os.environ.pop("AWS_PROFILE", None)
# moto's in-process DynamoDB Streams need this (botocore otherwise targets account-id endpoints).
os.environ["AWS_ACCOUNT_ID_ENDPOINT_MODE"] = "disabled"


@pytest.fixture(scope="session")
def standin_url() -> Iterator[str]:
    """The SageMaker runtime stand-in, served for the whole session (demo endpoints, no token-rate limit)."""
    from sagemaker_fastchat.standin.server import StandinConfig, create_app
    from tests.helpers import serve_in_thread

    with serve_in_thread(create_app(StandinConfig())) as url:
        yield url


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """In CI a skipped test is a failure: nothing is allowed to pass by not running."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which counts as a failure: {report.longrepr}"
