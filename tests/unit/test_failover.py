"""A model served by several variants, over the scripted transport: sticky choice, failover only before
the first token, breakers skipping a failing endpoint, warm-up exclusions, and what is recorded."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import botocore.exceptions
import pytest

from contract.chunk import WorkerChunk
from contract.spec import parse_model_item
from rollout.breaker import OPEN, BreakerPolicy
from runtime.adapter import SageMakerAdapter
from runtime.outcomes import OutcomeRecorder
from runtime.tracing import WORKER_SERVICE
from runtime.transport import (
    EndpointError,
    EndpointFailure,
    EndpointTimeout,
    MockTransport,
    Script,
    Unavailable,
    client_failure,
)
from runtime.variants import Attempt, Breakers, sticky_key
from sagemaker_fastchat.standin import demo
from stores.testing import MemoryOutcomeStore
from telemetry.testing import recording_tracer, sent
from tests.helpers import example_item

SPEC = parse_model_item(
    {
        **example_item("tgi"),
        "model_name": "m",
        "endpoint_name": "live",
        "variants": [{"endpoint_name": "cand", "weight": 50}],
    }
)


def reply(text: str) -> list[list[bytes]]:
    lines = demo.render_lines("tgi", "demo-tgi", demo.plan("tgi", "demo-tgi", {"inputs": f"[[say:{text}]]"}))
    return [[line] for line in lines]


class Endpoints:
    """Per endpoint: answer with its name, or fail as told (before or after its first token)."""

    def __init__(self, **failing: EndpointFailure | str) -> None:
        self.failing = failing
        self.transport = MockTransport(self.handle)

    def handle(self, endpoint: str, _body: bytes) -> Script:
        how = self.failing.get(endpoint)
        if isinstance(how, EndpointFailure):
            raise how
        if how == "mid-stream":
            return [
                *reply(f"partial from {endpoint}")[:2],
                EndpointError(f"endpoint {endpoint} broke", started=True),
            ]
        return reply(f"answer from {endpoint}")


def adapter(endpoints: Endpoints, **kw: Any) -> SageMakerAdapter:
    return SageMakerAdapter(SPEC, endpoints.transport, 0.5, **kw)


def chat(a: SageMakerAdapter, prompt: str, **params: Any) -> tuple[list[WorkerChunk], list[Attempt]]:
    attempts: list[Attempt] = []

    async def run() -> list[WorkerChunk]:
        return [c async for c in a.generate_stream({"prompt": prompt, **params}, attempts)]

    return asyncio.run(run()), attempts


def refused(endpoint: str) -> Unavailable:
    return Unavailable(f"endpoint {endpoint} cannot be reached (connection refused)")


def test_a_conversation_keeps_its_variant_across_turns_and_regenerations() -> None:
    a = adapter(Endpoints())
    a.assistant_role = "ASSISTANT:"
    seen: Counter[str] = Counter()
    for i in range(40):
        turn1 = f"SYSTEM USER: question {i} ASSISTANT:"
        turn2 = f"{turn1} an answer</s>USER: and then? ASSISTANT:"
        endpoints = {chat(a, p)[1][0].endpoint for p in (turn1, turn1, turn2)}
        assert len(endpoints) == 1
        seen.update(endpoints)
    assert set(seen) == {"live", "cand"}  # both take conversations (50/50)


def test_an_explicit_conversation_id_decides() -> None:
    key = sticky_key({"prompt": "anything", "conversation_id": "c-1"}, "ASSISTANT:")
    assert key == sticky_key({"prompt": "other", "conversation_id": "c-1"}, None)
    assert sticky_key({"prompt": "x", "conversation_id": 5}, None).startswith(
        "turn:"
    )  # not a string: ignored


def test_the_workers_split_over_10000_conversations_is_within_2_points_and_sticky() -> None:
    """The adapter's own choice (sticky key from `conversation_id`, weights from the spec, excluded and
    weight-0 variants dropped), not just the ranking function: 70/30 within 2 points, and a second call
    for the same conversation makes the same choice."""
    spec = parse_model_item(
        {
            **example_item("tgi"),
            "model_name": "m",
            "endpoint_name": "live",
            "variants": [{"endpoint_name": "cand", "weight": 30}, {"endpoint_name": "off", "weight": 0}],
        }
    )
    a = SageMakerAdapter(spec, Endpoints().transport)
    a.assistant_role = "ASSISTANT:"
    ids = [f"conv-{i}" for i in range(10_000)]
    first = {
        c: a.ranked({"prompt": "USER: hi ASSISTANT:", "conversation_id": c})[0].endpoint_name for c in ids
    }
    counts = Counter(first.values())
    assert set(counts) == {"live", "cand"}  # weight 0 is never chosen
    assert abs(counts["live"] / 100 - 70) <= 2, counts
    assert abs(counts["cand"] / 100 - 30) <= 2, counts
    for c in ids:  # a later turn of the same conversation (another prompt) keeps its variant
        params = {"prompt": "USER: hi ASSISTANT: hello</s>USER: more ASSISTANT:", "conversation_id": c}
        assert a.ranked(params)[0].endpoint_name == first[c]


def client_error(code: str, status: int, message: str = "boom") -> botocore.exceptions.ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return botocore.exceptions.ClientError(response, "InvokeEndpointWithResponseStream")


# What SageMaker answers before a first token, as the real transport maps it (runtime/transport.py), for
# each endpoint-side failure README "Variants on the worker" lists under failover before the first token.
BEFORE_THE_FIRST_TOKEN = {
    "refused": (refused("cand"), "unavailable"),
    "throttled (429)": (client_failure(client_error("ThrottlingException", 429), "cand", False), "throttled"),
    "5xx": (client_failure(client_error("InternalFailure", 500), "cand", False), "endpoint_error"),
    "ModelError (424)": (client_failure(client_error("ModelError", 424), "cand", False), "endpoint_error"),
    "ModelNotReady": (
        client_failure(client_error("ModelNotReadyException", 429), "cand", False),
        "unavailable",
    ),
    "503": (client_failure(client_error("ServiceUnavailable", 503), "cand", False), "unavailable"),
    "does not exist": (
        client_failure(client_error("ValidationError", 400, "Endpoint cand not found."), "cand", False),
        "unavailable",
    ),
    "endpoint's own 4xx": (
        client_failure(client_error("ValidationError", 400, "Input validation error"), "cand", False),
        "endpoint_error",
    ),
    "read timeout": (EndpointTimeout("endpoint cand timed out"), "timeout"),
    "stream error before a token": (
        EndpointError("endpoint cand failed mid-stream (ModelStreamError: x)", started=True),
        "endpoint_error",
    ),
}


@pytest.mark.parametrize("failure", BEFORE_THE_FIRST_TOKEN, ids=list(BEFORE_THE_FIRST_TOKEN))
def test_an_endpoint_side_failure_fails_over_before_the_first_token(failure: str) -> None:
    error, kind = BEFORE_THE_FIRST_TOKEN[failure]
    endpoints = Endpoints(cand=error)
    failed_over = 0
    for i in range(30):  # a fresh adapter (and breaker) each time: only failover, no open breaker
        out, attempts = chat(adapter(endpoints), f"USER: q{i} ASSISTANT:")
        assert out[-1]["text"] == "answer from live"
        assert out[-1].get("endpoint") == "live"  # the last chunk names the variant that answered
        assert all(c["error_code"] == 0 for c in out)
        assert [x.endpoint for x in attempts][-1] == "live"
        assert all(x.failed_over and x.error_kind == kind for x in attempts[:-1])
        failed_over += len(attempts) > 1
    assert failed_over  # the failing variant was the sticky choice of some conversations


def test_a_request_the_config_refuses_is_not_failed_over() -> None:
    """`invalid_request` (a parameter out of range, a request the config cannot build) is the request's
    fault, not the endpoint's: every variant would refuse it, so it is the answer, and no endpoint is
    called."""
    endpoints = Endpoints()
    a = adapter(endpoints)
    for i in range(20):
        out, attempts = chat(a, f"USER: q{i} ASSISTANT:", max_new_tokens=0)
        assert out[-1].get("error", {}).get("kind") == "invalid_request"
        assert len(attempts) == 1
        assert not attempts[0].failed_over
    assert endpoints.transport.calls == []


def test_never_fails_over_after_a_token() -> None:
    endpoints = Endpoints(cand="mid-stream", live="mid-stream")
    out, attempts = chat(adapter(endpoints), "USER: hi ASSISTANT:")
    assert len(attempts) == 1
    assert out[0]["text"].startswith("partial")
    assert "broke" in out[-1]["text"]
    assert len(endpoints.transport.calls) == 1


def test_when_every_variant_fails_the_last_failure_is_the_answer() -> None:
    out, attempts = chat(
        adapter(Endpoints(cand=refused("cand"), live=refused("live"))), "USER: hi ASSISTANT:"
    )
    assert len(out) == 1
    assert out[0].get("error", {}).get("kind") == "unavailable"
    assert len(attempts) == 2


def test_an_open_breaker_is_skipped_and_probed_after_its_cool_down() -> None:
    clock = [0.0]
    breakers = Breakers(BreakerPolicy(consecutive=2, cooldown=10.0), clock=lambda: clock[0])
    endpoints = Endpoints(cand=refused("cand"))
    a = adapter(endpoints, breakers=breakers)
    for i in range(20):
        chat(a, f"USER: q{i} ASSISTANT:")
    assert breakers.get("cand").state == OPEN
    calls = len(endpoints.transport.calls)
    for i in range(20):
        assert chat(a, f"USER: q{i} ASSISTANT:")[0][-1]["text"] == "answer from live"
    assert len(endpoints.transport.calls) == calls + 20  # the open one was never called
    clock[0] += 10
    endpoints.failing.clear()
    tried = {chat(a, f"USER: q{i} ASSISTANT:")[1][0].endpoint for i in range(20)}
    assert "cand" in tried  # the probe passed: closed again
    assert breakers.get("cand").state == "closed"


def test_a_variant_the_warm_up_excluded_never_takes_a_request() -> None:
    endpoints = Endpoints()
    a = adapter(endpoints, excluded={"cand": "endpoint cand is Creating, not InService"})
    for i in range(50):
        chat(a, f"USER: q{i} ASSISTANT:")
    assert {e for e, _ in endpoints.transport.calls} == {"live"}
    cand = next(v for v in a.describe() if v["endpoint_name"] == "cand")
    assert cand["weight"] == 0
    assert "Creating" in cand["excluded"]


def test_outcomes_count_every_attempt_per_variant() -> None:
    store = MemoryOutcomeStore()
    recorder = OutcomeRecorder(store, clock=lambda: 120.0)
    a = adapter(Endpoints(cand=refused("cand")), recorder=recorder.record)
    for i in range(20):
        chat(a, f"USER: q{i} ASSISTANT:")
    assert recorder.flush() == 2
    counts = {c.variant: c for c in store.read("m", 0)}
    assert counts["live"].requests == 20
    assert counts["live"].errors == 0
    assert sum(counts["live"].ttft_hist.values()) == 20
    assert counts["cand"].errors == counts["cand"].requests > 0
    assert not counts["cand"].ttft_hist


def test_a_store_that_is_down_keeps_the_counts_for_the_next_flush() -> None:
    store = MemoryOutcomeStore()
    recorder = OutcomeRecorder(store, clock=lambda: 120.0, max_pending=2)
    a = adapter(Endpoints(), recorder=recorder.record)
    chat(a, "USER: one ASSISTANT:")
    store.available = False
    assert recorder.flush() == 0
    chat(a, "USER: two ASSISTANT:")
    store.available = True
    recorder.flush()
    assert sum(c.requests for c in store.read("m", 0)) == 2
    assert recorder.pending() == 0


def test_generation_finished_names_the_variant_and_the_failovers() -> None:
    from structlog.testing import capture_logs

    from runtime.tracing import GenerationTrace, traced_stream

    a = adapter(Endpoints(cand=refused("cand")))
    trace = GenerationTrace(recording_tracer(WORKER_SERVICE), None, "m", "live", 3)

    async def run(i: int) -> None:
        params = {"prompt": f"USER: x{i} ASSISTANT:"}
        async for _ in traced_stream(a.generate_stream(params, trace.attempts), trace):
            pass

    segments = []
    with capture_logs() as logs:
        for i in range(10):
            tracer = recording_tracer(WORKER_SERVICE)
            trace = GenerationTrace(tracer, None, "m", "live", 3)
            asyncio.run(run(i))
            (segment,) = sent(tracer)
            segments.append(segment)
    finished = [e for e in logs if e["event"] == "generation_finished"]
    assert len(finished) == 10
    assert {e["variant"] for e in finished} == {"live"}
    failed_over = [e for e in finished if "failovers" in e]
    assert failed_over  # some conversations were assigned the refusing variant first
    assert all(e["failovers"] == ["cand: unavailable"] for e in failed_over)
    # The trace: `variant` annotated on the segment (searchable), failovers in the call's metadata.
    assert {s["annotations"]["variant"] for s in segments} == {"live"}
    assert all(s["annotations"]["endpoint_name"] == "live" for s in segments)
    calls = [s["subsegments"][0]["metadata"]["sagemaker-fastchat"] for s in segments]
    assert [c.get("failovers") for c in calls] == [e.get("failovers") for e in finished]
    assert all(c["variant"] == "live" for c in calls)


def test_only_the_last_variant_to_try_is_retried_by_the_transport() -> None:
    """botocore's retries (with backoff: seconds) are for a call with nowhere else to go; a call with
    another variant behind it fails over at once instead."""
    endpoints = Endpoints(cand=refused("cand"), live=refused("live"))
    chat(adapter(endpoints), "USER: hi ASSISTANT:")
    assert endpoints.transport.retries == [False, True]
    single = Endpoints()
    asyncio.run(_drain(SageMakerAdapter(parse_model_item(example_item("tgi")), single.transport)))
    assert single.transport.retries == [True]


async def _drain(a: SageMakerAdapter) -> None:
    async for _ in a.generate_stream({"prompt": "hi"}):
        pass


def test_a_request_the_config_refuses_is_not_counted_against_the_endpoint() -> None:
    recorder = OutcomeRecorder(MemoryOutcomeStore(), clock=lambda: 120.0)
    a = adapter(Endpoints(), recorder=recorder.record)
    out, attempts = chat(a, "USER: hi ASSISTANT:", temperature="hot")
    assert out[-1].get("error", {}).get("kind") == "invalid_request"
    assert len(attempts) == 1  # not failed over
    assert recorder.pending() == 0
    assert all(b.state == "closed" and b.window_counts() == (0, 0) for b in (r.breaker for r in a.routes))


def test_a_share_skipped_by_an_open_breaker_counts_against_its_variant() -> None:
    """A conversation whose sticky choice is skipped (breaker open) is a request and an error of that
    variant for the rollout's counts, so a failing candidate reaches its minimum sample (and its
    rollback) while its breaker protects users."""
    clock = [0.0]
    breakers = Breakers(BreakerPolicy(consecutive=2, cooldown=1000.0), clock=lambda: clock[0])
    recorder = OutcomeRecorder(MemoryOutcomeStore(), clock=lambda: 120.0)
    endpoints = Endpoints(cand=refused("cand"))
    a = adapter(endpoints, breakers=breakers, recorder=recorder.record)
    results = [chat(a, f"USER: q{i} ASSISTANT:") for i in range(60)]
    assert all(out[-1]["error_code"] == 0 for out, _ in results)
    calls_to_cand = sum(e == "cand" for e, _ in endpoints.transport.calls)
    assert calls_to_cand == 2  # then its breaker opened
    firsts = Counter(attempts[0].endpoint for _, attempts in results)
    recorder.flush()
    counts = {c.variant: c for c in recorder.store.read("m", 0)}  # type: ignore[attr-defined]
    assert counts["cand"].requests == counts["cand"].errors == firsts["cand"] > 2
    skipped = [x for _, attempts in results for x in attempts if x.error_kind == "circuit_open"]
    assert len(skipped) == firsts["cand"] - 2


def _two_minutes_of_counts(store: MemoryOutcomeStore) -> OutcomeRecorder:
    now = [120.0]
    recorder = OutcomeRecorder(store, clock=lambda: now[0])
    a = adapter(Endpoints(), recorder=recorder.record)
    for minute in (120.0, 180.0, 240.0):  # three (model, variant, minute) entries at least
        now[0] = minute
        chat(a, f"USER: at {minute} ASSISTANT:")
    return recorder


def test_a_flush_failing_mid_batch_sends_only_what_was_not_applied() -> None:
    store = MemoryOutcomeStore()
    recorder = _two_minutes_of_counts(store)
    store.fail_after = 1  # the first count is added, then the store fails
    assert recorder.flush() == 1
    assert recorder.pending() == 2
    recorder.flush()
    assert sum(c.requests for c in store.read("m", 0)) == 3  # each chat counted once, none twice
    assert recorder.pending() == 0


def test_a_store_failing_outside_its_contract_never_counts_twice() -> None:
    """A failure that does not say how much was applied: the batch is dropped (logged), not re-sent."""
    store = MemoryOutcomeStore()
    recorder = _two_minutes_of_counts(store)
    store.fail_after, store.failure = 1, RuntimeError("bug")
    assert recorder.flush() == 0
    assert recorder.pending() == 0
    assert recorder.dropped == 3
    recorder.flush()
    assert sum(c.requests for c in store.read("m", 0)) == 1  # what the store applied, once


BARE = {
    "request": {"defaults": {"inputs": ""}, "mapping": {"prompt": "$.inputs"}},
    "response": {"mapping": {"text": "$.t"}},
}


def test_published_fields_are_what_every_answering_variant_maps() -> None:
    """A parameter reaches the endpoint only if the variant that answers maps it: the model publishes
    the fields every variant that can answer maps (weight 0 cannot answer), and each variant its own."""
    from runtime.model_set import ModelSet

    spec = parse_model_item(
        {
            **example_item("tgi"),
            "model_name": "m",
            "endpoint_name": "live",
            "variants": [
                {
                    "endpoint_name": "cand",
                    "weight": 50,
                    "endpoint_req_config": example_item("openai-sse")["endpoint_req_config"],
                },
                {"endpoint_name": "off", "weight": 0, "endpoint_req_config": BARE},
            ],
        }
    )
    a = SageMakerAdapter(spec, None)
    assert a.request_fields == {"stream", "max_new_tokens", "temperature", "top_p", "stop", "seed"}
    assert "presence_penalty" in {
        *next(v for v in a.describe() if v["endpoint_name"] == "cand")["request_fields"]
    }
    assert a.response_fields == {"text", "finish_reason", "generated_tokens", "id", "logprobs"}
    model = ModelSet(1, {"m": a}, ("m",)).describe()["models"][0]
    assert model["request_fields"] == sorted(a.request_fields)
    assert model["response_fields"] == sorted(a.response_fields)
    alone = SageMakerAdapter(parse_model_item({**example_item("openai-sse"), "model_name": "o"}), None)
    assert {"presence_penalty", "frequency_penalty", "messages"} <= alone.request_fields
    assert "top_k" not in alone.request_fields
