"""Endpoint verdicts (pure), the per-endpoint cache, and the probe's reading of its final chunk."""

from __future__ import annotations

import pytest

from contract.endpoints import (
    CachedChecker,
    EndpointVerdict,
    FakeEndpointChecker,
    verdict_from_description,
    verdict_from_error,
)
from runtime.warmup import probe_failure
from stores.endpoints import Boto3EndpointChecker


@pytest.mark.parametrize("status", ["InService", "Updating", "SystemUpdating", "RollingBack"])
def test_serving_statuses_pass(status: str) -> None:
    """InService passes, and so do the statuses in which an endpoint keeps serving while it changes."""
    assert verdict_from_description("e", {"EndpointStatus": status}) == EndpointVerdict(True, status=status)


@pytest.mark.parametrize("status", ["Creating", "OutOfService", "Deleting", "Failed", "UpdateRollbackFailed"])
def test_other_statuses_are_refused_with_the_status(status: str) -> None:
    """Any other status refuses, naming the endpoint and its status."""
    verdict = verdict_from_description("e", {"EndpointStatus": status})
    assert not verdict.ok
    assert verdict.reason == f"endpoint e is {status}, not InService"


def test_failure_reason_is_kept() -> None:
    """A Failed endpoint's FailureReason is in the reason."""
    verdict = verdict_from_description("e", {"EndpointStatus": "Failed", "FailureReason": "no capacity"})
    assert verdict.reason == "endpoint e is Failed, not InService (no capacity)"


def test_missing_status_is_refused() -> None:
    """A description without a status (never seen from AWS) refuses rather than raising."""
    assert not verdict_from_description("e", {}).ok


def test_not_found_is_refused() -> None:
    """AWS's ValidationException for an endpoint that does not exist refuses."""
    verdict = verdict_from_error("e", "ValidationException", 'Could not find endpoint "arn:...:endpoint/e".')
    assert not verdict.ok
    assert not verdict.transient
    assert verdict.reason is not None
    assert "does not exist" in verdict.reason


@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied"])
def test_access_denied_lets_through_with_a_warning(code: str) -> None:
    """A role without DescribeEndpoint cannot check: the model passes, with a warning."""
    verdict = verdict_from_error("e", code, "not authorized")
    assert verdict.ok
    assert verdict.warning is not None
    assert "cannot check endpoint e" in verdict.warning


def test_other_errors_refuse_for_now() -> None:
    """Throttling or a server error is not a verdict on the endpoint: refused, to be checked again."""
    verdict = verdict_from_error("e", "ThrottlingException", "Rate exceeded")
    assert not verdict.ok
    assert verdict.transient
    assert verdict.reason is not None
    assert "ThrottlingException" in verdict.reason


def test_cache_answers_within_ttl_then_asks_again() -> None:
    """One DescribeEndpoint per endpoint per ttl, however many models share it."""
    now = [0.0]
    fake = FakeEndpointChecker({"e": "InService"})
    cached = CachedChecker(fake, ttl=5.0, clock=lambda: now[0])
    assert cached.check("e").ok
    assert cached.check("e").ok
    assert fake.calls == ["e"]
    now[0] = 5.0
    cached.check("e")
    assert fake.calls == ["e", "e"]


def test_probe_failure_reading() -> None:
    """A probe passes on a final chunk with a token; fails on an error, an empty reply, or no chunk."""
    ok = {"text": " Hi", "error_code": 0, "usage": {"completion_tokens": 1}, "finish_reason": "length"}
    assert probe_failure(ok) is None
    assert probe_failure({**ok, "text": "", "usage": {"completion_tokens": 1}}) is None  # a special token
    empty = probe_failure({**ok, "text": "", "usage": {"completion_tokens": 0}})
    assert empty is not None
    assert "response.mapping.text" in empty
    error = probe_failure({"text": "**NETWORK ERROR**\n\n(model m: endpoint e failed)", "error_code": 50001})
    assert error == "the probe failed: **NETWORK ERROR** (model m: endpoint e failed)"
    assert probe_failure(None) is not None


def test_no_aws_configuration_is_a_failed_check_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a region the client cannot be made: the check reports why (transient), nothing raises."""
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    verdict = Boto3EndpointChecker().check("e")
    assert not verdict.ok
    assert verdict.transient
    assert verdict.reason is not None
    assert "region" in verdict.reason
