"""Variants through the real worker (FastChat protocol over HTTP, aiobotocore, botocore's parser) against the
SageMaker stand-in with faults on demand: failover before the first token, never after it, warm-up
exclusions, stickiness, and what /model-set shows."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sagemaker_fastchat.launch import build_worker
from sagemaker_fastchat.standin.server import StandinConfig, create_app
from tests.helpers import example_item, free_port, serve_in_thread, worker_args


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    """A stand-in of this module's own: its faults touch no other test."""
    with serve_in_thread(create_app(StandinConfig())) as url:
        yield url


@pytest.fixture
def env(standin: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin)
    yield standin
    for name in httpx.get(f"{standin}/_standin/faults").json():
        httpx.delete(f"{standin}/_standin/faults/{name}")


def item(live: str, variants: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {**example_item("tgi"), "model_name": "m", "endpoint_name": live, "variants": variants, **extra}


def worker(tmp_path: Path, items: list[dict[str, Any]], **overrides: Any) -> Any:
    path = tmp_path / "models.json"
    path.write_text(json.dumps(items))
    args = worker_args(str(path), **{"limit_concurrency": 64, "first_token_timeout": 10.0, **overrides})
    _, app = build_worker(args)
    return serve_in_thread(app)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 15
    while httpx.get(f"{url}/ready").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.05)


def fault(standin: str, endpoint: str, **spec: Any) -> None:
    httpx.post(f"{standin}/_standin/faults/{endpoint}", json=spec).raise_for_status()


def invocations(standin: str, endpoint: str) -> int:
    return int(httpx.get(f"{standin}/_standin/faults").json()[endpoint]["invocations"])


async def chats(url: str, prompts: list[str], concurrency: int = 32) -> list[list[dict[str, Any]]]:
    """Each prompt streamed through worker_generate_stream: its frames."""
    gate = asyncio.Semaphore(concurrency)

    async def one(client: httpx.AsyncClient, prompt: str) -> list[dict[str, Any]]:
        async with gate:
            body = {"model": "m", "prompt": prompt, "max_new_tokens": 8, "temperature": 0.0}
            try:
                r = await client.post(f"{url}/worker_generate_stream", json=body)
            except httpx.TransportError:  # a chat the worker did not answer: counted as failed, not a crash
                return []
            return [json.loads(f) for f in r.content.split(b"\0") if f]

    # A pooled connection is dropped after 2 s idle, before uvicorn's 5 s keep-alive close: reusing one
    # just as the server closes it resets it (httpx.ReadError), a race of the test's client, not the
    # worker's (our API's pool to the worker expires connections after 4 s for the same reason).
    limits = httpx.Limits(keepalive_expiry=2.0)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(one(client, p) for p in prompts))


def test_one_of_two_variants_refusing_connections(tmp_path: Path, env: str) -> None:
    """>= 99.9% of 1,000 chats succeed, every answer comes from the healthy variant, and no stream that
    started was ever sent again (the healthy endpoint was called exactly once per chat)."""
    fault(env, "demo-tgi-vcand", refuse=True)
    fault(env, "demo-tgi-vlive")  # no fault: counts invocations
    with worker(
        tmp_path, [item("demo-tgi-vlive", [{"endpoint_name": "demo-tgi-vcand", "weight": 50}])]
    ) as url:
        wait_ready(url)
        results = asyncio.run(chats(url, [f"USER: chat {i} ASSISTANT:" for i in range(1000)]))
        ok = [r for r in results if r and r[-1]["error_code"] == 0]
        assert len(ok) >= 999
        assert all("demo-tgi-vlive" in r[-1]["text"] for r in ok)
        assert invocations(env, "demo-tgi-vlive") == 1000
        assert (
            invocations(env, "demo-tgi-vcand") >= 1
        )  # it was chosen (and refused) before its breaker opened
        state = httpx.get(f"{url}/model-set").json()
        variants = {v["endpoint_name"]: v for v in state["models"][0]["variants"]}
        assert variants["demo-tgi-vcand"]["breaker"]["state"] in ("open", "half_open")
        assert variants["demo-tgi-vlive"]["breaker"]["state"] == "closed"


def test_a_variant_failing_mid_stream_answers_with_the_error_never_a_second_answer(
    tmp_path: Path, env: str
) -> None:
    fault(env, "demo-tgi-vmid", drop_after=3)
    fault(env, "demo-tgi-vok")
    variants = [{"endpoint_name": "demo-tgi-vmid", "weight": 100}]
    with worker(tmp_path, [item("demo-tgi-vok", variants)]) as url:  # the primary's weight is 0
        wait_ready(url)
        results = asyncio.run(chats(url, [f"USER: chat {i} ASSISTANT:" for i in range(20)]))
        for frames in results:
            assert frames[-1]["error_code"] != 0
            assert frames[0]["text"]  # text was sent, then the error
            assert all("demo-tgi-vok" not in f["text"] for f in frames)
        assert invocations(env, "demo-tgi-vok") == 0


def test_a_candidate_not_in_service_or_failing_its_probe_never_takes_a_request(
    tmp_path: Path, env: str
) -> None:
    fault(env, "demo-tgi-vnew", status="Creating")
    fault(env, "demo-tgi-vbad", error="stream", error_rate=1.0)
    fault(env, "demo-tgi-vgood")
    variants = [
        {"endpoint_name": "demo-tgi-vnew", "weight": 30},
        {"endpoint_name": "demo-tgi-vbad", "weight": 30},
    ]
    with worker(tmp_path, [item("demo-tgi-vgood", variants, probe=True)]) as url:
        wait_ready(url)
        probes = invocations(env, "demo-tgi-vbad")
        assert probes == 1  # its probe, nothing else
        results = asyncio.run(chats(url, [f"USER: chat {i} ASSISTANT:" for i in range(50)]))
        assert all("demo-tgi-vgood" in r[-1]["text"] for r in results)
        assert invocations(env, "demo-tgi-vnew") == 0
        assert invocations(env, "demo-tgi-vbad") == probes
        model = httpx.get(f"{url}/model-set").json()["models"][0]
        excluded = {v["endpoint_name"]: v["excluded"] for v in model["variants"]}
        assert "Creating" in excluded["demo-tgi-vnew"]
        assert "probe failed" in excluded["demo-tgi-vbad"]
        assert excluded["demo-tgi-vgood"] is None


def test_a_conversation_id_keeps_its_variant(tmp_path: Path, env: str) -> None:
    variants = [{"endpoint_name": "demo-tgi-vb", "weight": 50}]
    with worker(tmp_path, [item("demo-tgi-va", variants)]) as url:
        wait_ready(url)
        for i in range(10):
            answers = set()
            for turn in range(3):
                body = {
                    "model": "m",
                    "prompt": f"turn {turn}",
                    "conversation_id": f"conv-{i}",
                    "max_new_tokens": 4,
                }
                answers.add(httpx.post(f"{url}/worker_generate", json=body).json()["text"].split()[2])
            assert len(answers) == 1  # "Demo model demo-tgi-va ..." names the endpoint


def test_outcome_counts_reach_the_rollout_table(
    tmp_path: Path, env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ROLLOUT_METRICS_TABLE set, each variant's requests, errors and first-token times reach the
    DynamoDB table (moto), flushed off the request path, the last time as the worker stops."""
    import boto3
    from moto.server import ThreadedMotoServer

    from stores.rollout_metrics import DynamoOutcomeStore, create_table

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{port}")
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, "outcomes")
        fault(env, "demo-tgi-vx", error="unavailable", error_rate=1.0)
        variants = [{"endpoint_name": "demo-tgi-vx", "weight": 50}]
        with worker(tmp_path, [item("demo-tgi-vy", variants)], rollout_metrics_table="outcomes") as url:
            wait_ready(url)
            results = asyncio.run(chats(url, [f"USER: chat {i} ASSISTANT:" for i in range(20)]))
            assert all(r[-1]["error_code"] == 0 for r in results)
        # the worker has stopped: its last flush is done (nothing counted is lost at shutdown)
        counts = {c.variant: c for c in DynamoOutcomeStore("outcomes", client).read("m", 0)}
        assert counts["demo-tgi-vy"].requests == 20
        assert counts["demo-tgi-vy"].errors == 0
        assert sum(counts["demo-tgi-vy"].ttft_hist.values()) == 20
        assert counts["demo-tgi-vx"].errors == counts["demo-tgi-vx"].requests > 0
    finally:
        server.stop()


def test_a_conversation_keeps_its_variant_across_turns_and_regenerations(tmp_path: Path, env: str) -> None:
    """Without a conversation id: prompts built by the model's own FastChat template (as the web UI and
    the API build them), turn after turn and regenerated, all reach the variant of the first turn."""
    from fastchat.conversation import get_conv_template

    variants = [{"endpoint_name": "demo-tgi-vd", "weight": 50}]
    with worker(tmp_path, [item("demo-tgi-vc", variants, conv_template="vicuna_v1.1")]) as url:
        wait_ready(url)
        seen = set()
        for i in range(12):
            conv = get_conv_template("vicuna_v1.1")
            endpoints = set()
            for turn in range(3):
                conv.append_message(conv.roles[0], f"conversation {i}, question {turn}")
                conv.append_message(conv.roles[1], None)
                for _ in range(2):  # the answer, then a regeneration
                    body = {"model": "m", "prompt": conv.get_prompt(), "max_new_tokens": 4}
                    endpoints.add(httpx.post(f"{url}/worker_generate", json=body).json()["text"].split()[2])
                conv.update_last_message("an answer")
            assert len(endpoints) == 1, endpoints
            seen |= endpoints
        assert seen == {"demo-tgi-vc", "demo-tgi-vd"}


def test_a_hung_variant_fails_over_after_the_shorter_first_token_timeout(tmp_path: Path, env: str) -> None:
    """A variant whose first token is late (the stand-in's first_token_delay) while another healthy one
    remains gets only --failover-first-token-timeout: its conversations are answered by the other variant
    (with the full timeout, 20 s, the late variant would have answered them itself). The last variant to
    try keeps the full timeout: with both late, every chat is still answered. The margins are wide (a 3 s
    failover timeout against a healthy first token of milliseconds and a late one of 10 s) so a busy CI
    machine cannot turn the healthy variant's first token into a timeout."""
    fault(env, "demo-tgi-vhung", first_token_delay=10)
    variants = [{"endpoint_name": "demo-tgi-vhung", "weight": 50}]
    prompts = [f"USER: chat {i} ASSISTANT:" for i in range(16)]
    with worker(
        tmp_path,
        [item("demo-tgi-vfine", variants)],
        first_token_timeout=20.0,
        failover_first_token_timeout=3.0,
    ) as url:
        wait_ready(url)
        results = asyncio.run(chats(url, prompts))
        assert all(r[-1]["error_code"] == 0 for r in results)
        assert all("demo-tgi-vfine" in r[-1]["text"] for r in results)
        assert invocations(env, "demo-tgi-vhung") >= 1  # it was chosen, then given up on
        fault(env, "demo-tgi-vfine", first_token_delay=4)
        fault(env, "demo-tgi-vhung", first_token_delay=4)
        results = asyncio.run(chats(url, [p + " again" for p in prompts]))
        assert all(r[-1]["error_code"] == 0 for r in results)
