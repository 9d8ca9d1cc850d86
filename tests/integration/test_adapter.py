"""The adapter through aiobotocore and botocore's real event-stream parser, against the SageMaker
stand-in."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiobotocore.config import AioConfig
from botocore.exceptions import EventStreamError

from contract.spec import parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.transport import SageMakerClient, payload_batches, sagemaker_client_config
from sagemaker_fastchat.standin.server import StandinConfig, create_app
from tests.helpers import example_item, serve_in_thread, standin_streams, wait_for_streams

FORMATS = {"tgi": "tgi", "openai": "openai-sse", "lmi": "lmi-jsonlines"}


def client(url: str, config: AioConfig | None = None) -> SageMakerClient:
    return SageMakerClient(config or sagemaker_client_config(64), endpoint_url=url, region_name="us-east-1")


def adapter(
    url: str, fmt: str, endpoint: str | None = None, config: AioConfig | None = None
) -> SageMakerAdapter:
    item = example_item(FORMATS[fmt])
    if endpoint:
        item["endpoint_name"] = endpoint
    return SageMakerAdapter(parse_model_item(item), client(url, config))


async def collect(a: SageMakerAdapter, prompt: str, **params: Any) -> list[dict[str, Any]]:
    params = {"prompt": prompt, "temperature": 0.7, "max_new_tokens": 100, **params}
    return [chunk async for chunk in a.generate_stream(params)]


def chunks(a: SageMakerAdapter, prompt: str, **params: Any) -> list[dict[str, Any]]:
    """All chunks of one request, on a loop of its own (the client is closed with it)."""

    async def run() -> list[dict[str, Any]]:
        try:
            return await collect(a, prompt, **params)
        finally:
            await a._client.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def recut_url() -> Iterator[str]:
    """A stand-in that re-cuts the byte stream into 7-byte PayloadParts (lines split anywhere)."""
    with serve_in_thread(create_app(StandinConfig(part_size=7))) as url:
        yield url


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_streams_each_container_format(standin_url: str, fmt: str) -> None:
    """Each format streams cumulative text that ends with the full reply and a finish reason (tokens
    paced like a real endpoint's: parts that arrive together are decoded into one chunk)."""
    out = chunks(adapter(standin_url, fmt), "[[say:Hello there, wörld 😀!]] [[rate:100]]")
    texts = [c["text"] for c in out]
    assert texts[-1] == "Hello there, wörld 😀!"
    assert all(b.startswith(a) for a, b in itertools.pairwise(texts))
    assert out[-1]["finish_reason"] == "stop"
    assert out[-1]["error_code"] == 0
    assert len(out) >= 3


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_parts_cut_mid_line(recut_url: str, fmt: str) -> None:
    """PayloadParts of 7 bytes (half lines, split characters) decode to the same text."""
    assert (
        chunks(adapter(recut_url, fmt), "[[say:Grüße aus dem Stand-in]]")[-1]["text"]
        == "Grüße aus dem Stand-in"
    )


def test_length_finish(standin_url: str) -> None:
    """max_new_tokens reached -> finish_reason length."""
    out = chunks(adapter(standin_url, "tgi"), "[[tokens:50]]", max_new_tokens=5)
    assert out[-1]["finish_reason"] == "length"
    assert out[-1]["usage"]["completion_tokens"] == 5


def test_a_stop_string_hangs_up_on_the_endpoint(standin_url: str) -> None:
    """Once the stop string is seen, the endpoint's stream is closed: its remaining tokens are not read."""
    _, abandoned = standin_streams(standin_url)
    # 40 s of tokens: a loaded CI machine once stalled the in-process stand-in long enough that the whole
    # 4 s stream it used to send went out at once, ending normally before the hang-up.
    out = chunks(
        adapter(standin_url, "tgi"), "[[tokens:2000]] [[rate:50]]", stop=["demo-tgi"], max_new_tokens=3000
    )
    assert out[-1]["text"] == "Demo model "
    assert out[-1]["finish_reason"] == "stop"
    wait_for_streams(standin_url, (0, abandoned + 1))


def test_stop_string_cuts_and_closes(standin_url: str) -> None:
    """A stop string beyond the container's limit is honoured by the worker."""
    stops = ["zz1", "zz2", "zz3", "zz4", "three"]
    out = chunks(adapter(standin_url, "openai"), "[[say:one two three four]]", stop=stops)
    assert out[-1]["text"] == "one two "
    assert out[-1]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        ("[[tokens:20]] [[fail-after:3]]", "ModelStreamError"),
        ("[[tokens:20]] [[internal-failure-after:3]]", "InternalStreamFailure"),
        ("[[tokens:2]] [[error-line]]", "streamed an error: Input validation error"),
        ("[[corrupt-after:2]]", "Checksum"),
        ("[[throttle]]", "throttling"),
    ],
)
def test_failures_become_error_chunks(standin_url: str, prompt: str, words: str) -> None:
    """Mid-stream errors, corrupt frames and throttling end in one clear FastChat error chunk."""
    out = chunks(adapter(standin_url, "tgi"), prompt)
    last = out[-1]
    assert last["error_code"] != 0
    assert words in last["text"]
    assert "demo-tgi" in last["text"]
    assert all(c["error_code"] == 0 for c in out[:-1])


def test_mid_stream_error_after_text_was_delivered(standin_url: str) -> None:
    """Text streamed before a ModelStreamError (even in the same network read) was delivered first."""
    out = chunks(adapter(standin_url, "lmi"), "[[tokens:20]] [[fail-after:4]]")
    assert len(out) >= 2
    assert out[-2]["text"].startswith("Demo model demo-lmi")
    assert out[-2]["usage"]["completion_tokens"] == 4
    assert "ModelStreamError" in out[-1]["text"]


def test_missing_endpoint(standin_url: str) -> None:
    """An endpoint that does not exist is reported as such (the error AWS returns)."""
    out = chunks(adapter(standin_url, "tgi", endpoint="no-such-endpoint"), "hi")
    assert len(out) == 1
    assert "does not exist" in out[0]["text"]


def test_timeout(standin_url: str) -> None:
    """A read timeout is an error chunk, not a hung worker."""
    config = AioConfig(read_timeout=0.5, connect_timeout=1, retries={"total_max_attempts": 1})
    out = chunks(adapter(standin_url, "tgi", config=config), "[[ttft:3]]")
    assert "timed out" in out[-1]["text"]


def test_unreachable_endpoint_url() -> None:
    """Nothing listening: a clear error, never an exception."""
    config = AioConfig(connect_timeout=0.5, retries={"total_max_attempts": 1})
    out = chunks(adapter("http://127.0.0.1:9", "tgi", config=config), "hi")
    assert out[-1]["error_code"] != 0


def test_one_adapter_shared_by_concurrent_requests(standin_url: str) -> None:
    """No per-request state on the shared adapter: 24 concurrent streams each get their own text."""
    a = adapter(standin_url, "tgi")

    async def all_at_once() -> list[str]:
        try:
            replies = [collect(a, f"[[say:reply number {i} here]]") for i in range(24)]
            return [str(out[-1]["text"]) for out in await asyncio.gather(*replies)]
        finally:
            await a._client.close()

    assert asyncio.run(all_at_once()) == [f"reply number {i} here" for i in range(24)]


class PublicOnly:
    """An event stream offering only botocore's public iteration (what a future release might leave)."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._stream.__aiter__()  # type: ignore[no-any-return]


async def _parts_and_error(url: str, prompt: str, public: bool) -> tuple[list[bytes], str | None]:
    sagemaker = client(url)
    body = b'{"inputs": "%s", "parameters": {"max_new_tokens": 100}, "stream": true}' % prompt.encode()
    got: list[bytes] = []
    try:
        response = await (await sagemaker.get()).invoke_endpoint_with_response_stream(
            EndpointName="demo-tgi", Body=body
        )
        stream = response["Body"]
        if not public:
            assert hasattr(stream, "_raw_stream")
            assert hasattr(stream, "_parse_event")
        try:
            async for batch in payload_batches(PublicOnly(stream) if public else stream):
                got.extend(batch)
        except EventStreamError as exc:
            return got, exc.response["Error"]["Code"]
        finally:
            stream.close()
        return got, None
    finally:
        await sagemaker.close()


@pytest.mark.parametrize("prompt", ["[[tokens:30]]", "[[tokens:20]] [[fail-after:4]]"])
def test_payload_batches_match_botocores_parsed_events(standin_url: str, prompt: str) -> None:
    """The fast path (botocore's frame decoder fed from aiohttp's buffer, PayloadPart bytes taken as is)
    yields exactly what botocore's fully parsed events hold, and a ModelStreamError raises botocore's own
    EventStreamError after the parts before it."""
    fast = asyncio.run(_parts_and_error(standin_url, prompt, public=False))
    public = asyncio.run(_parts_and_error(standin_url, prompt, public=True))
    assert fast == public
    assert len(fast[0]) >= 4
    assert fast[1] == (None if "fail" not in prompt else "ModelStreamError")
