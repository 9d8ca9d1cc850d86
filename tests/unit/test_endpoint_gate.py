"""The sync's optional endpoint check (sync/endpoint_gate.py) with the in-memory checker: every endpoint
that may take a new or changed spec's traffic (the primary, each variant with weight > 0) must exist and
be serving, else the spec is rejected (its last good spec stays published); a failed check publishes."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from contract.endpoints import FakeEndpointChecker
from contract.registry import RegistryState
from contract.snapshot import Manifest, ManifestEntry
from contract.spec import ModelSpec, parse_model_item
from sync.endpoint_gate import screen
from tests.helpers import example_item


def spec(name: str, endpoint: str, *variants: tuple[str, float]) -> ModelSpec:
    item: dict[str, Any] = {**example_item("tgi"), "model_name": name, "endpoint_name": endpoint}
    if variants:
        item["variants"] = [{"endpoint_name": e, "weight": w} for e, w in variants]
    return parse_model_item(item)


def state(*specs: ModelSpec) -> RegistryState:
    return RegistryState(tuple(s.name for s in specs), {s.name: s for s in specs}, {})


def test_a_variant_endpoint_that_is_not_serving_rejects_the_spec() -> None:
    checker = FakeEndpointChecker({"live": "InService", "cand": "Creating"})
    screened = screen(state(spec("a", "live", ("cand", 5))), Manifest(), checker)
    assert screened.specs == {}
    assert screened.rejected == {
        "a": "a: variants[0].endpoint_name: endpoint cand is Creating, not InService"
    }


def test_a_missing_variant_endpoint_rejects_the_spec_and_names_each_problem() -> None:
    checker = FakeEndpointChecker({"live": "Failed", "ok": "InService"})
    screened = screen(state(spec("a", "live", ("ok", 10), ("gone", 20))), Manifest(), checker)
    reason = screened.rejected["a"]
    assert reason.startswith("a: endpoint live is Failed, not InService; ")
    assert "a: variants[1].endpoint_name: endpoint gone does not exist" in reason
    assert "variants[0]" not in reason


def test_weight_0_variants_are_not_checked() -> None:
    """A rolled-back or aborted candidate (weight 0) takes no traffic: it never holds the model back."""
    checker = FakeEndpointChecker({"live": "InService"})
    s = spec("a", "live", ("rolled-back", 0))
    assert screen(state(s), Manifest(), checker).specs == {"a": s}
    assert checker.calls == ["live"]


def test_every_serving_variant_passes_and_endpoints_are_described_once() -> None:
    checker = FakeEndpointChecker({"live": "InService", "cand": "Updating"})
    a, b = spec("a", "live", ("cand", 25)), spec("b", "cand", ("live", 50))
    assert screen(state(a, b), Manifest(), checker).specs == {"a": a, "b": b}
    assert sorted(checker.calls) == ["cand", "live"]  # one DescribeEndpoint per endpoint per publish


@pytest.mark.parametrize("error", ["!AccessDeniedException", "!ThrottlingException"])
def test_a_failed_check_of_a_variant_publishes_with_a_log_line(error: str) -> None:
    checker = FakeEndpointChecker({"live": "InService", "cand": error})
    s = spec("a", "live", ("cand", 5))
    with capture_logs() as logs:
        assert screen(state(s), Manifest(), checker).specs == {"a": s}
    (line,) = [e for e in logs if e["event"] == "endpoint_check_skipped"]
    assert line["model"] == "a"
    assert line["endpoint"] == "cand"


def test_a_published_spec_is_not_checked_again() -> None:
    checker = FakeEndpointChecker({})
    s = spec("a", "live", ("cand", 5))
    live = Manifest((ManifestEntry("a", "/p/a", 1, s.hash),))
    assert screen(state(s), live, checker).specs == {"a": s}
    assert checker.calls == []
