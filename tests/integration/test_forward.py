"""The stand-in forwards an endpoint to a user's own local model server (TGI or OpenAI-compatible),
relaying its streamed bytes as PayloadParts; the adapter decodes them as it would a real endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from contract.spec import parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.transport import SageMakerClient, sagemaker_client_config
from sagemaker_fastchat.standin import demo
from sagemaker_fastchat.standin.server import StandinConfig, create_app
from tests.helpers import example_item, serve_in_thread


async def tgi_generate_stream(request: Request) -> Response:
    """A stand-in for a user's local TGI server: echoes the prompt back as tokens."""
    body = await request.json()
    if body.get("inputs") == "fail":
        return JSONResponse({"error": "Input validation error", "error_type": "validation"}, status_code=422)
    plan = demo.plan("tgi", "local", {"inputs": f"[[say:local says {body['inputs']}]]"})

    async def lines() -> AsyncIterator[bytes]:
        for line in demo.render_lines("tgi", "local", plan):
            yield line

    return StreamingResponse(lines(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def forwarding_standin() -> Iterator[str]:
    local = Starlette(routes=[Route("/generate_stream", tgi_generate_stream, methods=["POST"])])
    with serve_in_thread(local) as model_url:
        config = StandinConfig(forwards={"my-local-tgi": f"{model_url}/generate_stream"})
        with serve_in_thread(create_app(config)) as url:
            yield url


def generate(url: str, params: dict[str, Any]) -> list[dict[str, Any]]:
    item = {**example_item("tgi"), "endpoint_name": "my-local-tgi"}
    client = SageMakerClient(sagemaker_client_config(8), endpoint_url=url, region_name="us-east-1")

    async def run() -> list[dict[str, Any]]:
        try:
            return [c async for c in SageMakerAdapter(parse_model_item(item), client).generate_stream(params)]
        finally:
            await client.close()

    return asyncio.run(run())


def test_forwarded_endpoint_streams(forwarding_standin: str) -> None:
    """A forwarded endpoint answers through botocore's parser like any endpoint."""
    out = generate(forwarding_standin, {"prompt": "hello", "max_new_tokens": 50})
    assert out[-1]["text"] == "local says hello"
    assert out[-1]["finish_reason"] == "stop"


def test_forwarded_server_error_is_a_model_error(forwarding_standin: str) -> None:
    """An error status from the local server becomes a clear error chunk."""
    out = generate(forwarding_standin, {"prompt": "fail"})
    assert out[-1]["error_code"] != 0
    assert "Received client error (422)" in out[-1]["text"]
