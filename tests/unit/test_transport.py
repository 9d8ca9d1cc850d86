"""The endpoint transport port (runtime/transport.py): botocore's failures -> domain errors (pure, no HTTP
and no retries), and a request through the scripted MockTransport -> the FastChat chunks users see."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    EventStreamError,
    ReadTimeoutError,
)
from fastchat.constants import ErrorCode

from contract.chunk import WorkerChunk, encode_frame
from contract.spec import parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.transport import (
    EndpointError,
    EndpointFailure,
    EndpointTimeout,
    MockTransport,
    NotFound,
    Script,
    Throttled,
    Unavailable,
    botocore_failure,
)
from sagemaker_fastchat.standin import demo
from tests.helpers import example_item

SPEC = parse_model_item(example_item("tgi"))


def client_error(code: str, message: str = "", status: int = 400, cls: type = ClientError) -> Exception:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return cls(response, "InvokeEndpointWithResponseStream")  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("exc", "kind", "code", "words"),
    [
        (
            client_error("ThrottlingException", "Rate exceeded", 429),
            Throttled,
            ErrorCode.RATE_LIMIT,
            "throttling",
        ),
        (
            client_error("ValidationError", "Endpoint e of account 1 not found."),
            NotFound,
            42903,
            "does not exist",
        ),
        (client_error("ModelNotReadyException", "warming"), Unavailable, 42903, "not available"),
        (client_error("InternalFailure", "boom", 503), Unavailable, 42903, "not available"),
        (client_error("ModelStreamError", "oops", cls=EventStreamError), EndpointError, 50001, "mid-stream"),
        (
            client_error("InternalStreamFailure", "x", cls=EventStreamError),
            EndpointError,
            50001,
            "stream failed",
        ),
        (client_error("ModelError", "422 from primary", 424), EndpointError, 50001, "returned ModelError"),
        (EndpointConnectionError(endpoint_url="http://x"), Unavailable, 42903, "cannot be reached"),
        (ReadTimeoutError(endpoint_url="http://x"), EndpointTimeout, 50006, "timed out"),
        (ConnectTimeoutError(endpoint_url="http://x"), EndpointTimeout, 50006, "timed out"),
        (ConnectionResetError("reset by peer"), EndpointError, 50001, "ConnectionResetError"),
    ],
)
def test_botocore_failures_map_to_domain_errors(exc: Exception, kind: type, code: int, words: str) -> None:
    failure = botocore_failure(exc, "e", started=False)
    assert type(failure) is kind
    assert failure.code == code
    assert words in failure.message
    assert "endpoint e" in failure.message


def tgi(prompt: str) -> list[bytes]:
    return demo.render_lines("tgi", "demo-tgi", demo.plan("tgi", "demo-tgi", {"inputs": prompt}))


def run(script: Script | EndpointFailure, **params: Any) -> tuple[list[WorkerChunk], MockTransport]:
    def handler(_endpoint: str, _body: bytes) -> Script:
        if isinstance(script, EndpointFailure):
            raise script
        return script

    transport = MockTransport(handler)
    adapter = SageMakerAdapter(SPEC, transport, first_token_timeout=0.2)

    async def collect() -> list[WorkerChunk]:
        return [c async for c in adapter.generate_stream({"prompt": "p", **params})]

    return asyncio.run(collect()), transport


def test_a_throttle_is_a_429_chunk_at_once() -> None:
    """The case that took 4 s of real retries over HTTP."""
    out, transport = run(Throttled("endpoint demo-tgi is throttling requests; try again shortly"))
    assert len(out) == 1
    assert out[0]["error_code"] == ErrorCode.RATE_LIMIT
    assert out[0].get("error", {}).get("kind") == "throttled"
    assert transport.calls[0][0] == "demo-tgi"


def test_scripted_batches_stream_as_cumulative_chunks() -> None:
    parts = tgi("[[say:one two three]]")
    out, _ = run([parts[:2], parts[2:]])
    assert out[-1]["text"] == "one two three"
    assert out[-1].get("finish_reason") == "stop"
    assert encode_frame(out[-1]).endswith(b"\0")


def test_no_first_token_in_time_is_a_timeout_chunk() -> None:
    out, transport = run([1.0, tgi("[[say:late]]")])
    assert out[-1].get("error", {}).get("kind") == "timeout"
    assert "sent no token within 0.2 s" in out[-1]["text"]
    assert transport.unfinished == 1  # hung up on


def test_a_failure_after_text_keeps_the_text_then_the_error() -> None:
    parts = tgi("[[say:alpha beta gamma]]")
    out, _ = run([parts[:2], EndpointError("endpoint demo-tgi failed mid-stream", started=True)])
    assert out[0]["text"] == "alpha beta"
    assert "failed mid-stream" in out[-1]["text"]
