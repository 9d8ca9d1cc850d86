"""The warm-up gate with an in-memory endpoint checker and probe: what is refused, what is checked when,
and how a refused model keeps its last good spec in the built model set."""

from __future__ import annotations

from typing import Any

from contract.endpoints import FakeEndpointChecker
from contract.spec import ModelSpec, parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.model_set import ModelSet, build_model_set
from runtime.sources import Snapshot
from runtime.warmup import Warmup
from sagemaker_fastchat.registry_ops import merge_worker_state
from telemetry.testing import recording_tracer, sent
from tests.helpers import example_item


def spec(name: str, endpoint: str, **extra: Any) -> ModelSpec:
    return parse_model_item({**example_item("tgi"), "model_name": name, "endpoint_name": endpoint, **extra})


def make_adapter(s: ModelSpec) -> SageMakerAdapter:
    return SageMakerAdapter(s, client=None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def gate(
    statuses: dict[str, str], probe_result: str | None = None
) -> tuple[Warmup, FakeEndpointChecker, list[str]]:
    checker = FakeEndpointChecker(statuses)
    probed: list[str] = []

    async def probe(s: ModelSpec) -> str | None:
        probed.append(s.name)
        return probe_result

    return Warmup(checker, probe, recheck=30.0, clock=Clock()), checker, probed


def test_refuses_missing_and_not_in_service_endpoints() -> None:
    """Only a serving endpoint is admitted; the others are refused with the endpoint's state."""
    warmup, _, _ = gate({"ok": "InService", "new": "Creating"})
    refused = warmup.admit([spec("a", "ok"), spec("b", "new"), spec("c", "gone")])
    assert set(refused) == {"b", "c"}
    assert refused["b"] == "endpoint new is Creating, not InService"
    assert "endpoint gone does not exist" in refused["c"]
    assert warmup.describe()["refused"] == refused


def test_access_denied_passes_with_a_warning() -> None:
    """Without DescribeEndpoint permission the model goes live and the warning is reported."""
    warmup, _, _ = gate({"e": "!AccessDeniedException"})
    assert warmup.admit([spec("a", "e")]) == {}
    assert "cannot check endpoint e" in warmup.describe()["warnings"]["a"]


def test_probe_runs_only_for_probe_specs_and_only_after_the_endpoint_check() -> None:
    """`probe: true` adds the probe; a failing probe refuses; a refused endpoint is never probed."""
    warmup, _, probed = gate({"ok": "InService", "new": "Creating"}, probe_result="the probe failed: boom")
    refused = warmup.admit(
        [spec("plain", "ok"), spec("probed", "ok", probe=True), spec("x", "new", probe=True)]
    )
    assert probed == ["probed"]
    assert refused == {"probed": "the probe failed: boom", "x": "endpoint new is Creating, not InService"}


def test_shared_endpoint_is_described_once() -> None:
    """Two models on one endpoint cost one DescribeEndpoint."""
    warmup, checker, _ = gate({"e": "InService"})
    warmup.admit([spec("a", "e"), spec("b", "e")])
    assert checker.calls == ["e"]


def test_refused_candidate_is_rechecked_only_when_due() -> None:
    """A refused spec is not checked again on every poll, only after `recheck` seconds, then admitted."""
    warmup, checker, _ = gate({"e": "Creating"})
    clock = warmup.clock
    assert isinstance(clock, Clock)
    candidate = spec("a", "e")
    assert "a" in warmup.admit([candidate])
    assert not warmup.recheck_due()
    clock.now = 10
    assert "a" in warmup.admit([candidate])  # another change came in: the refusal is remembered
    assert checker.calls == ["e"]
    clock.now = 30
    assert warmup.recheck_due()
    checker.statuses["e"] = "InService"
    assert warmup.admit([candidate]) == {}
    assert checker.calls == ["e", "e"]
    assert not warmup.recheck_due()
    assert warmup.describe()["refused"] == {}


def test_a_changed_spec_is_checked_at_once() -> None:
    """A new spec for a refused model is a new candidate: checked now, not after the recheck delay."""
    warmup, checker, _ = gate({"e": "Creating", "f": "InService"})
    warmup.admit([spec("a", "e")])
    assert warmup.admit([spec("a", "f")]) == {}
    assert checker.calls == ["e", "f"]


def test_model_set_keeps_last_good_spec_and_checks_only_changes() -> None:
    """In the built set a refused change keeps the old adapter, a refused new model is absent, and
    unchanged specs are never passed to the gate again."""
    warmup, checker, _ = gate({"old": "InService", "new": "Creating"})
    first = build_model_set(Snapshot(1, [spec("a", "old")]), ModelSet(None), make_adapter, "t", warmup.admit)
    assert first.names == ["a"]
    second = build_model_set(
        Snapshot(2, [spec("a", "new"), spec("b", "gone")]), first, make_adapter, "t", warmup.admit
    )
    assert second.get("a") is first.get("a")
    assert second.names == ["a"]
    assert second.rejected["a"] == "a: endpoint new is Creating, not InService"
    assert "does not exist" in second.rejected["b"]
    calls = len(checker.calls)
    third = build_model_set(Snapshot(3, [spec("a", "old")]), second, make_adapter, "t", warmup.admit)
    assert third.get("a") is first.get("a")  # back to the live spec: nothing to check
    assert len(checker.calls) == calls
    assert third.rejected == {}


def test_models_list_shows_what_the_worker_refused() -> None:
    """`models list` rows: a model published live but refused by a reachable worker is `refused`, with
    the worker's reason; sync rejections and unreachable workers leave the rows as they are."""
    rows = [
        {"model": "a", "status": "live", "reason": None},
        {"model": "b", "status": "live", "reason": None},
        {"model": "c", "status": "rejected", "reason": "c: sync reason"},
    ]
    worker = {
        "models": [{"name": "a", "hash": "x"}],
        "endpoint_check": {"refused": {"a": "the probe failed: x", "b": "endpoint e is Creating", "c": "w"}},
    }
    merged = merge_worker_state(rows, worker)
    assert [r["status"] for r in merged] == ["refused (last good spec live)", "refused", "rejected"]
    assert merged[0]["reason"] == "worker: the probe failed: x"
    assert merged[2]["reason"] == "c: sync reason"
    assert merge_worker_state(rows, None) == rows
    assert merge_worker_state(rows, {"endpoint_check": {"enabled": False}}) == rows


def test_a_failed_check_refuses_except_in_the_first_set() -> None:
    """When DescribeEndpoint itself fails, a starting worker serves the published spec (with a warning)
    rather than nothing; later candidates wait for a verdict."""
    warmup, _, _ = gate({"e": "!ThrottlingException", "gone": "!ThrottlingException"})
    assert warmup.admit([spec("a", "e")]) == {}
    assert "let through at start-up" in warmup.describe()["warnings"]["a"]
    refused = warmup.admit([spec("b", "e")])
    assert "ThrottlingException" in refused["b"]


def with_variants(name: str, endpoint: str, *others: tuple[str, int], **extra: Any) -> ModelSpec:
    variants = [{"endpoint_name": e, "weight": w} for e, w in others]
    return spec(name, endpoint, variants=variants, **extra)


def test_a_failing_variant_stays_out_with_weight_0_and_the_model_goes_live() -> None:
    """Each variant that may take traffic is checked; one that is not InService or fails its probe is
    excluded (weight 0, reason kept) while the others serve; the model is refused only when none passes."""
    warmup, checker, _ = gate({"live": "InService", "cand": "Creating"})
    s = with_variants("a", "live", ("cand", 20), ("off", 0))
    assert warmup.admit([s]) == {}
    assert sorted(checker.calls) == ["cand", "live"]  # weight 0 is never checked
    assert warmup.excluded_variants(s) == {"cand": "endpoint cand is Creating, not InService"}
    adapter = SageMakerAdapter(s, client=None, excluded=warmup.excluded_variants(s))
    assert [(v["endpoint_name"], v["weight"]) for v in adapter.describe()] == [
        ("live", 80),
        ("cand", 0),
        ("off", 0),
    ]
    assert warmup.describe()["variants_excluded"] == {
        "a": {"cand": "endpoint cand is Creating, not InService"}
    }

    warmup, _, _ = gate({"x": "Creating", "y": "Failed"})
    refused = warmup.admit([with_variants("b", "x", ("y", 50))])
    assert refused["b"].startswith("no variant passed: x: endpoint x is Creating")


def test_the_warm_up_trace_names_the_excluded_variants() -> None:
    """Like refused models, variants left out of a model that went live are in the poller's trace:
    the `warm-up` subsegment's metadata (model, endpoint, why) and a count annotation."""
    tracer = recording_tracer("sagemaker-fastchat-poller")
    warmup, _, _ = gate({"live": "InService", "cand": "Creating", "x": "Failed"})
    with tracer.span("poll"):
        refused = warmup.admit([with_variants("a", "live", ("cand", 20)), spec("b", "x")])
    assert set(refused) == {"b"}
    (segment,) = sent(tracer)
    sub = next(s for s in segment["subsegments"] if s["name"] == "warm-up")
    meta = sub["metadata"]["sagemaker-fastchat"]
    assert meta["variants_excluded"] == {"a": {"cand": "endpoint cand is Creating, not InService"}}
    assert meta["refused"] == {"b": "endpoint x is Failed, not InService"}
    assert sub["annotations"]["variants_excluded"] == 1


def test_each_variant_is_probed_through_its_own_endpoint() -> None:
    probed: list[str] = []

    async def probe(s: ModelSpec) -> str | None:
        probed.append(s.endpoint_name)
        return "the probe failed: boom" if s.endpoint_name == "cand" else None

    warmup = Warmup(FakeEndpointChecker({"live": "InService", "cand": "InService"}), probe, clock=Clock())
    s = with_variants("a", "live", ("cand", 50), probe=True)
    assert warmup.admit([s]) == {}
    assert sorted(probed) == ["cand", "live"]
    assert warmup.excluded_variants(s) == {"cand": "the probe failed: boom"}


def test_models_list_shows_variants_with_weights_and_breakers() -> None:
    from sagemaker_fastchat.registry_ops import variant_lines

    variants = [
        {
            "endpoint_name": "live",
            "weight": 80,
            "primary": True,
            "excluded": None,
            "breaker": {"state": "closed"},
        },
        {
            "endpoint_name": "cand",
            "weight": 20,
            "primary": False,
            "excluded": None,
            "breaker": {"state": "open", "reason": "5 failures in a row"},
        },
    ]
    rows = merge_worker_state(
        [{"model": "a", "status": "live", "reason": None}], {"models": [{"name": "a", "variants": variants}]}
    )
    assert variant_lines(rows[0]["variants"]) == [
        "primary live: weight 80%, breaker closed",
        "variant cand: weight 20%, breaker open (5 failures in a row)",
    ]
    assert variant_lines(variants[:1]) == []
    assert variant_lines("junk") == []


def test_an_excluded_variant_is_rechecked_and_joins_once_in_service() -> None:
    """A candidate still Creating stays out; after `recheck` seconds the unchanged spec is checked again
    and, once InService, a new adapter gives it its weight (before that, the same adapter is kept)."""
    warmup, checker, _ = gate({"live": "InService", "cand": "Creating"})
    clock = warmup.clock
    assert isinstance(clock, Clock)
    s = with_variants("a", "live", ("cand", 25))

    def build(previous: ModelSet) -> ModelSet:
        def make(x: ModelSpec) -> SageMakerAdapter:
            return SageMakerAdapter(x, client=None, excluded=warmup.excluded_variants(x))

        return build_model_set(Snapshot(1, [s]), previous, make, "t", warmup.admit)

    first = build(ModelSet(None))
    assert first.get("a").excluded() == {"cand": "endpoint cand is Creating, not InService"}  # type: ignore[union-attr]
    assert not warmup.recheck_due()
    calls = len(checker.calls)
    assert build(first).get("a") is first.get("a")  # not due: not checked, same adapter
    assert len(checker.calls) == calls
    clock.now += 30
    assert warmup.recheck_due()
    assert build(first).get("a") is first.get("a")  # checked again, still Creating: same adapter
    checker.statuses["cand"] = "InService"
    clock.now += 30
    joined = build(first).get("a")
    assert joined is not first.get("a")
    assert joined is not None
    assert joined.excluded() == {}
    assert [v["weight"] for v in joined.describe()] == [75, 25]
    assert not warmup.recheck_due()
