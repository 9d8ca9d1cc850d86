"""The API app in process with the official `openai` client (over httpx's ASGI transport) and the
worker behind it an in-memory fake: the statuses the integration stack cannot provoke on demand (the
worker's own failure, an endpoint or worker that is unavailable), each as the SDK's own exception."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import httpx
import openai
import orjson
import pytest
from fastchat.constants import ErrorCode

from runtime.openai_api import Settings, WorkerSilent, WorkerUnreachable, create_app

CONTROLLER, WORKER = "http://controller", "http://worker"


class FakeWorker:
    """The controller and one of our workers serving `m` on endpoint `ep`; the prompt picks the stream."""

    def __init__(self) -> None:
        self.streams = 0
        self.pulled = 0  # frames taken from the worker
        self.open = 0  # worker streams not closed yet

    async def get_json(self, url: str) -> Any:
        assert url == f"{WORKER}/model-set"
        return {"models": [{"name": "m", "endpoint_name": "ep", "conv_template": "raw", "hash": "h"}]}

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any:
        if url == f"{CONTROLLER}/list_models":
            return {"models": ["m"]}
        if url == f"{CONTROLLER}/get_worker_address":
            return {"address": WORKER}
        raise AssertionError(url)

    async def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        self.streams += 1
        prompt = str(body["prompt"])
        if "unreachable" in prompt:
            raise WorkerUnreachable("ConnectionRefusedError")
        if "silent" in prompt:
            raise WorkerSilent()
        for kind in ("internal", "unavailable"):
            if kind in prompt:
                code = ErrorCode.INTERNAL_ERROR if kind == "internal" else ErrorCode.ENGINE_OVERLOADED
                frame = {"text": f"model m: {kind} trouble", "error_code": code, "error": {"kind": kind}}
                yield orjson.dumps(frame) + b"\0"
                return
        if "long" in prompt:
            self.open += 1
            try:
                for i in range(1, 1000):
                    self.pulled += 1
                    yield orjson.dumps({"text": "w " * i, "error_code": 0}) + b"\0"
            finally:
                self.open -= 1
            return
        yield orjson.dumps({"text": "hello", "error_code": 0}) + b"\0"


@asynccontextmanager
async def sdk_client(app: Any) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official client talking to the app in process (its lifespan running)."""
    async with app.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport) as http:
            yield openai.AsyncOpenAI(
                base_url="http://api/v1", api_key="none", max_retries=0, http_client=http
            )


@pytest.mark.parametrize(
    ("prompt", "status", "code", "streams"),
    [
        ("internal", 500, "internal_error", 1),
        ("unavailable", 503, "endpoint_unavailable", 1),
        # refused twice (retried once, after a refresh of the live set): the worker cannot be reached
        ("unreachable", 503, "worker_unavailable", 2),
        ("silent", 504, "timeout", 1),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_worker_side_failures_with_the_openai_client(
    prompt: str, status: int, code: str, streams: int, stream: bool
) -> None:
    """The worker failing itself (500), an endpoint or worker that is unavailable (503) and a silent
    worker (504): the openai client raises its exception for the status, with OpenAI's error body naming
    the model; streamed or not (an error before any text is the response's status)."""
    fake = FakeWorker()
    app = create_app(Settings(controller_address=CONTROLLER, worker_timeout=1), lambda: fake)

    async def run() -> None:
        async with sdk_client(app) as client:
            ok = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
            assert ok.choices[0].message.content == "hello"
            fake.streams = 0
            with pytest.raises(openai.InternalServerError) as caught:  # the SDK's 5xx
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": prompt}], stream=stream
                )
        assert caught.value.status_code == status
        body = caught.value.body
        assert isinstance(body, dict)
        assert (body["code"], body["type"]) == (code, "server_error")
        assert "model m" in body["message"]
        assert fake.streams == streams

    asyncio.run(run())


@pytest.mark.parametrize("n", [1, 3])
def test_a_client_that_reads_nothing_holds_its_worker_streams_back(n: int) -> None:
    """Backpressure, nothing buffered: while the client takes nothing (uvicorn's send waits for the
    socket to drain), the API reads at most about two frames per choice ahead from the worker, instead
    of reading the whole reply into memory. When the request is then cancelled (the client went away)
    every worker stream is closed at once (Starlette left the body to the garbage collector, and with
    n > 1 a pump blocked on the full queue swallowed the cancel and hung the close)."""
    fake = FakeWorker()
    app = create_app(Settings(controller_address=CONTROLLER), lambda: fake)
    body = orjson.dumps(
        {"model": "m", "messages": [{"role": "user", "content": "long"}], "stream": True, "n": n}
    )
    sent: list[Mapping[str, Any]] = []
    stuck = asyncio.Event()  # never set: the client's socket never drains

    async def send(message: Mapping[str, Any]) -> None:
        sent.append(message)
        if b"w " in message.get("body", b""):  # the first text: the client stops reading here
            await stuck.wait()

    request = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Mapping[str, Any]:
        if request:
            return request.pop()
        await stuck.wait()  # no disconnect either
        raise AssertionError

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 1),
        "server": ("api", 80),
    }

    async def run() -> None:
        async with app.lifespan_context(app):
            serving = asyncio.ensure_future(app(scope, receive, send))
            for _ in range(1000):  # until the first text is sent (the client takes no more after it)
                if sent and b"w " in sent[-1].get("body", b""):
                    break
                await asyncio.sleep(0.01)
            for _ in range(20):  # time for the API to read ahead, if it did
                await asyncio.sleep(0.01)
            assert b"w " in sent[-1].get("body", b"")
            assert n <= fake.pulled <= 3 * n + 2, fake.pulled
            assert fake.open == n
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
            assert fake.open == 0  # at once, not when the garbage collector gets to the response

    asyncio.run(run())


def test_health_answers_other_methods_with_405_and_allow() -> None:
    """`healthcheck --method POST` on the API's /health got the catch-all's 404: the route exists, so any
    method but GET (and HEAD) is a 405 naming the allowed ones."""
    app = create_app(Settings(controller_address=CONTROLLER), FakeWorker)

    async def run() -> None:
        transport = httpx.ASGITransport(app=app)
        async with app.lifespan_context(app), httpx.AsyncClient(transport=transport) as http:
            assert (await http.get("http://api/health")).json() == {"ok": True}
            assert (await http.head("http://api/health")).status_code == 200
            for method in ("POST", "DELETE"):
                r = await http.request(method, "http://api/health")
                assert r.status_code == 405
                assert r.headers["allow"] == "GET, HEAD"
                assert "not allowed" in r.json()["error"]["message"]
            assert (await http.post("http://api/elsewhere")).status_code == 404
            # the /v1 routes too: a wrong method is a 405 naming the right one, not "unknown route"
            for method, path, allow in (
                ("DELETE", "/v1/chat/completions", "POST"),
                ("GET", "/v1/completions", "POST"),
                ("POST", "/v1/models", "GET, HEAD"),
                ("DELETE", "/v1/models/m", "GET, HEAD"),
            ):
                r = await http.request(method, f"http://api{path}")
                assert (r.status_code, r.headers["allow"]) == (405, allow), (method, path)
                assert "not allowed" in r.json()["error"]["message"]
            assert (await http.get("http://api/v1/nothing-here")).status_code == 404
            # a route's own method with a trailing slash is no route: 404, not "use POST" to a POST
            assert (await http.post("http://api/v1/chat/completions/")).status_code == 404

    asyncio.run(run())


class MappingWorker(FakeWorker):
    """Our worker publishing what m's config maps (no penalties), or any other FastChat worker (no
    /model-set: nothing about mappings); it records what each stream was asked."""

    def __init__(self, ours: bool) -> None:
        super().__init__()
        self.ours = ours
        self.asked: list[Mapping[str, Any]] = []

    async def get_json(self, url: str) -> Any:
        if not self.ours:
            return None  # FastChat's workers have no /model-set
        model = (await super().get_json(url))["models"][0]
        fields = ["prompt", "max_new_tokens", "temperature", "top_p", "stop", "seed"]
        return {"models": [{**model, "request_fields": fields, "response_fields": ["text"]}]}

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any:
        if url == f"{WORKER}/worker_get_status":
            return {"model_names": ["m"]}
        if url == f"{WORKER}/model_details":
            return {"context_length": 4096}
        if url == f"{WORKER}/worker_get_conv_template":
            return {"conv": {"name": "raw", "sep_style": 12, "roles": ["user", "assistant"], "sep": ""}}
        return await super().post_json(url, body)

    def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        self.asked.append(body)
        return super().stream(url, body)


@pytest.mark.parametrize("ours", [True, False])
def test_unmapped_parameters_refused_only_where_the_worker_publishes_mappings(ours: bool) -> None:
    """Our worker publishes the fields m's config maps: a penalty it cannot carry is a 400 naming it
    (the endpoint is never called), a neutral one passes. Another FastChat worker publishes nothing:
    the parameter goes to it as before."""
    fake = MappingWorker(ours)
    app = create_app(Settings(controller_address=CONTROLLER), lambda: fake)
    user = [{"role": "user", "content": "hi"}]

    async def run() -> None:
        async with sdk_client(app) as client:
            ok = await client.chat.completions.create(
                model="m", messages=user, presence_penalty=0, frequency_penalty=0, n=1
            )
            assert ok.choices[0].message.content == "hello"
            call = client.chat.completions.create(model="m", messages=user, presence_penalty=0.5)
            if not ours:
                await call
                assert fake.asked[-1]["presence_penalty"] == 0.5
                return
            with pytest.raises(openai.BadRequestError) as caught:
                await call
        assert caught.value.body == {
            "message": "model m's endpoint config does not map `presence_penalty`; remove "
            "it or add it to request.mapping.",
            "type": "invalid_request_error",
            "param": "presence_penalty",
            "code": "unsupported_parameter",
        }
        assert len(fake.asked) == 1

    asyncio.run(run())


def test_a_workers_refusal_is_the_requests_fault_only_when_its_frame_says_so() -> None:
    """A worker's 4xx with an invalid-request frame (its own parameter check) is the request's fault: the
    client gets it. Any other non-200, e.g. the 404 of a worker that no longer serves the model, leaves the
    worker as unreachable, so the API refreshes its live set and retries once elsewhere."""
    from contract.chunk import error_chunk
    from runtime.openai_api import WorkerRefused, WorkerUnreachable, _refusal

    refused = error_chunk("m", "seed: out of range", 50003, "invalid_request", param="seed")
    gone = error_chunk("m", "not in the live model set", 50002, "not_found")
    assert isinstance(_refusal(400, orjson.dumps(refused) + b"\0"), WorkerRefused)
    assert isinstance(_refusal(404, orjson.dumps(gone) + b"\0"), WorkerUnreachable)
    assert isinstance(_refusal(400, b"not json"), WorkerUnreachable)
    assert isinstance(_refusal(502, orjson.dumps(refused)), WorkerRefused)  # the frame decides
