"""The worker's HTTP app in-process (FastChat protocol), served from a watched registry file against the
SageMaker stand-in: concurrency slots are always given back (client gone mid-stream, bad parameters, an
exception inside the stream), bad input is a clear error, and /ready says when the worker cannot serve."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime import fastchat_compat
from runtime.worker import MAX_BODY_BYTES, Slots
from sagemaker_fastchat.launch import build_worker
from tests.helpers import example_item, serve_in_thread, standin_streams, wait_for_streams, worker_args


@contextmanager
def running_worker(tmp_path: Path, **overrides: Any) -> Iterator[str]:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([{**example_item("tgi"), "model_name": "m"}]))
    _, app = build_worker(worker_args(str(path), **overrides))
    with serve_in_thread(app) as url:
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield url


@pytest.fixture
def standin_env(standin_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin_url)  # DescribeEndpoint before traffic
    return standin_url


@pytest.fixture
def worker_url(tmp_path: Path, standin_env: str) -> Iterator[str]:
    with running_worker(tmp_path) as url:
        yield url


def queue_length(url: str) -> int:
    return int(httpx.post(f"{url}/worker_get_status").json()["queue_length"])


def test_protocol_routes(worker_url: str) -> None:
    """Status, count_token, model_details, conv template and a streamed generation."""
    assert httpx.post(f"{worker_url}/worker_get_status").json()["model_names"] == ["m"]
    assert httpx.post(f"{worker_url}/count_token", json={"prompt": "abcdefgh"}).json() == {
        "count": 2,
        "error_code": 0,
    }
    assert httpx.post(f"{worker_url}/model_details", json={"model": "m"}).json() == {"context_length": 4096}
    assert "name" in httpx.post(f"{worker_url}/worker_get_conv_template", json={"model": "m"}).json()["conv"]
    params = {"model": "m", "prompt": "[[say:over the protocol]]", "temperature": 0.7, "max_new_tokens": 20}
    with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params) as r:
        chunks = [json.loads(c) for c in r.read().split(b"\0") if c]
    assert chunks[-1]["text"] == "over the protocol"
    reply = httpx.post(f"{worker_url}/worker_generate", json=params).json()
    assert reply["text"] == "over the protocol"
    missing = httpx.post(f"{worker_url}/worker_generate", json={**params, "model": "nope"}).json()
    assert missing["error_code"] != 0
    assert missing["text"].startswith("model nope: not in the live model set")
    assert missing["error"]["kind"] == "not_found"


def test_slots_are_released_when_clients_disconnect(worker_url: str, standin_url: str) -> None:
    """Clients that drop a stream mid-way give their concurrency slot back (limit 4, 12 dropped), and the
    worker hangs up on the endpoint for each of them."""
    _, abandoned = standin_streams(standin_url)
    params = {"model": "m", "prompt": "[[tokens:200]] [[rate:20]]", "temperature": 0.7, "max_new_tokens": 300}
    for _ in range(12):
        with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params, timeout=10) as r:
            next(r.iter_bytes())  # the first chunk, then hang up
    deadline = time.monotonic() + 10
    while queue_length(worker_url) != 0:
        assert time.monotonic() < deadline, f"slots still held: {queue_length(worker_url)}"
        time.sleep(0.1)
    wait_for_streams(standin_url, (0, abandoned + 12))
    params["prompt"] = "[[say:still serving]]"
    with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params, timeout=10) as r:
        assert json.loads(r.read().split(b"\0")[-2])["text"] == "still serving"


def frames(url: str, params: Any, route: str = "/worker_generate_stream") -> list[dict[str, Any]]:
    with httpx.stream("POST", f"{url}{route}", json=params, timeout=10) as r:
        return [json.loads(c) for c in r.read().split(b"\0") if c]


GOOD = {"model": "m", "prompt": "[[say:still serving]]", "temperature": 0.7, "max_new_tokens": 20}
BAD = [
    ({"temperature": "0.7"}, "temperature"),
    ({"top_p": "high"}, "top_p"),
    ({"top_k": "5"}, "top_k"),
    ({"stop": 5}, "stop"),
    ({"max_new_tokens": -1}, "max_new_tokens"),
]


def test_bad_parameters_are_error_frames_and_never_hold_a_slot(tmp_path: Path, standin_env: str) -> None:
    """With 2 slots, 5 bad requests on each route (each used to raise inside its stream and keep its
    slot) get an error frame naming the parameter, and a good request still streams."""
    with running_worker(tmp_path, limit_concurrency=2) as url:
        for route in ("/worker_generate_stream", "/worker_generate"):
            for change, param in BAD:
                if route == "/worker_generate":
                    reply = httpx.post(f"{url}{route}", json={**GOOD, **change}, timeout=10)
                    assert reply.status_code == 400
                    out = [reply.json()]
                else:
                    out = frames(url, {**GOOD, **change})
                assert len(out) == 1
                assert out[0]["error_code"] in (40001, 40302)
                assert out[0]["error"]["param"] == param
                assert out[0]["text"].startswith(f"model m: {param}: ")
        assert queue_length(url) == 0
        assert frames(url, GOOD)[-1]["text"] == "still serving"
        assert httpx.post(f"{url}/worker_generate", json=GOOD, timeout=10).json()["text"] == "still serving"


def test_an_exception_inside_the_stream_is_an_error_frame(
    tmp_path: Path, standin_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever still raises inside a stream ends it with an error frame (no dropped connection, no
    server path shown) and gives the slot back."""

    def broken(*_: Any) -> Any:
        raise RuntimeError("/srv/app/secret.py exploded")

    monkeypatch.setattr("runtime.adapter.Generation.feed", broken)
    with running_worker(tmp_path, limit_concurrency=1) as url:
        for _ in range(3):
            out = frames(url, GOOD)
            assert out[-1]["error"]["kind"] == "internal"
            assert "RuntimeError" in out[-1]["text"]
            assert "/srv" not in out[-1]["text"]
            assert httpx.post(f"{url}/worker_generate", json=GOOD, timeout=10).json()["error_code"] == 50001
        assert queue_length(url) == 0


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"', b"", b"null"])
@pytest.mark.parametrize(
    "route",
    [
        "/worker_generate_stream",
        "/worker_generate",
        "/count_token",
        "/model_details",
        "/worker_get_conv_template",
    ],
)
def test_a_body_that_is_not_a_json_object_is_a_400(worker_url: str, route: str, body: bytes) -> None:
    reply = httpx.post(f"{worker_url}{route}", content=body, timeout=10)
    assert reply.status_code == 400
    assert json.loads(reply.content.rstrip(b"\0"))["error"] == {
        "kind": "invalid_request",
        "model": "",
        "endpoint": None,
        "param": "body",
    }


def test_no_first_token_is_a_clear_timeout_frame(tmp_path: Path, standin_env: str) -> None:
    """An endpoint that never sends a first token: the stream ends with a timeout frame naming the model,
    the endpoint and the limit, and the slot is free again."""
    with running_worker(tmp_path, first_token_timeout=0.5) as url:
        out = frames(url, {**GOOD, "prompt": "[[ttft:30]] hello"})
        assert out[-1]["text"] == "model m: endpoint demo-tgi sent no token within 0.5 s"
        assert out[-1]["error_code"] == 50006
        assert out[-1]["error"]["kind"] == "timeout"
        assert queue_length(url) == 0


def test_ready_turns_503_while_every_slot_is_stuck(tmp_path: Path, standin_env: str) -> None:
    """The one slot held by a stream that sends nothing (no first token yet) for longer than
    --unready-after makes /ready 503 (ECS replaces the task); once it is given back the worker is ready."""
    with running_worker(tmp_path, limit_concurrency=1, unready_after=0.2) as url:
        slow = {**GOOD, "prompt": "[[ttft:20]] hello"}
        with httpx.stream("POST", f"{url}/worker_generate_stream", json=slow, timeout=10):
            deadline = time.monotonic() + 10
            while (ready := httpx.get(f"{url}/ready")).status_code != 503:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert ready.json()["ready"] is False
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)


@pytest.mark.parametrize(
    ("prompt", "kind", "code"),
    [
        ("[[throttle]]", "throttled", 42901),
        ("[[tokens:20]] [[fail-after:3]]", "endpoint_error", 50001),
        ("[[tokens:2]] [[error-line]]", "endpoint_error", 50001),
        ("[[corrupt-after:2]]", "endpoint_error", 50001),
    ],
)
def test_endpoint_failures_carry_a_kind_an_api_can_map(
    worker_url: str, prompt: str, kind: str, code: int
) -> None:
    """Each failure's error_code and error.kind say which HTTP status an API in front should answer."""
    last = frames(worker_url, {**GOOD, "prompt": prompt})[-1]
    assert (last["error"]["kind"], last["error_code"]) == (kind, code)
    assert last["error"]["endpoint"] == "demo-tgi"
    assert last["text"].startswith("model m: ")
    assert "endpoint demo-tgi" in last["text"]


def test_slots_tell_a_busy_worker_from_a_stuck_one() -> None:
    """A slot given back or a frame sent counts as progress: a full worker whose streams move is not
    stuck; one whose slots are all held with nothing moving is stuck for as long as that lasts."""
    now = [0.0]

    async def scenario() -> list[float]:
        slots = Slots(2, clock=lambda: now[0])
        first = await slots.acquire()
        seen = [slots.stuck_for()]  # one slot still free
        second = await slots.acquire()
        now[0] = 10.0
        seen.append(slots.stuck_for())  # both held for 10 s
        first()
        first()  # a second release of the same slot gives nothing back twice
        third = await slots.acquire()
        now[0] = 12.0
        seen.append(slots.stuck_for())  # full again, but a slot turned over 2 s ago
        slots.progressed()  # a stream sent a frame at 12 s
        now[0] = 13.0
        seen.append(slots.stuck_for())
        second()
        third()
        seen.append(slots.stuck_for())
        seen.append(float(slots.semaphore._value))  # both slots free, never more
        return seen

    assert asyncio.run(scenario()) == [0.0, 10.0, 2.0, 1.0, 0.0, 2.0]


def test_the_web_ui_shows_the_error_text(worker_url: str) -> None:
    """FastChat's web UI reads the worker's stream with its own code and shows the frame's text."""
    from fastchat.conversation import get_conv_template

    ui = fastchat_compat.import_torch_free("fastchat.serve.gradio_web_server")
    conv = get_conv_template("vicuna_v1.1")
    stream = ui.model_worker_stream_iter(conv, "m", worker_url, "[[throttle]]", 0.7, 1.0, 1.0, 64, [])
    last = list(stream)[-1]
    assert last["text"] == "model m: endpoint demo-tgi is throttling requests; try again shortly"
    assert last["error_code"] == 42901


def test_a_body_over_the_limit_is_a_413(worker_url: str) -> None:
    """The worker reads at most MAX_BODY_BYTES of a request; a bigger one is refused, not parsed."""
    body = b'{"model": "m", "prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'
    reply = httpx.post(f"{worker_url}/worker_generate_stream", content=body, timeout=30)
    assert reply.status_code == 413
    assert json.loads(reply.content.rstrip(b"\0"))["error"]["param"] == "body"
    assert frames(worker_url, GOOD)[-1]["text"] == "still serving"
