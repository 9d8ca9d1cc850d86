"""The endpoint transport port: one streaming SageMaker call, as batches of payload bytes or a domain error.

Shaped like httpx's `BaseTransport`: the adapter (runtime/adapter.py) knows requests and decoding, a
transport knows the wire. `AioBotocoreTransport` is the real one (aiobotocore: botocore's signing,
retries and event-stream frames, over aiohttp, on the serving loop: no thread per stream) and maps
botocore's failures to the domain errors below, so nothing above it matches botocore's strings;
`MockTransport` serves scripted batches and errors to unit tests (error mapping, failover) without HTTP.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, Callable, Iterable
from contextlib import AsyncExitStack, aclosing
from typing import Any, Protocol

import botocore.exceptions
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.eventstream import EventStreamBuffer, EventStreamHeaderParser
from fastchat.constants import ErrorCode

from contract.chunk import ENDPOINT_ERROR, THROTTLED, TIMEOUT, UNAVAILABLE


class EndpointFailure(Exception):
    """A failed call, as the worker reports it: message (naming the endpoint), FastChat code, kind.
    `started`: whether the endpoint had sent payload bytes before it failed."""

    code: int = ErrorCode.INTERNAL_ERROR
    kind: str = ENDPOINT_ERROR

    def __init__(self, message: str, *, started: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.started = started


class Throttled(EndpointFailure):
    code, kind = ErrorCode.RATE_LIMIT, THROTTLED


class Unavailable(EndpointFailure):
    """Not reachable, refused, dropped before an answer, not ready, 503."""

    code, kind = ErrorCode.ENGINE_OVERLOADED, UNAVAILABLE


class NotFound(Unavailable):
    """The endpoint does not exist (reported as unavailable: the model name itself is fine)."""


class EndpointError(EndpointFailure):
    """The endpoint answered with an error (a 4xx/5xx, ModelStreamError, a corrupt frame, ...)."""


class EndpointTimeout(EndpointFailure):
    code, kind = ErrorCode.CONTROLLER_WORKER_TIMEOUT, TIMEOUT


class EndpointTransport(Protocol):
    def open(self, endpoint: str, body: bytes, *, retry: bool = True) -> AsyncGenerator[list[bytes], None]:
        """Call `endpoint` with `body` (JSON); yields the PayloadParts' bytes, one list per network read,
        and raises an EndpointFailure. Closing the generator hangs up on the endpoint. `retry=False`: no
        retries of the call itself (the caller fails over to another endpoint instead)."""
        ...


# A call with another variant to fail over to is not retried by botocore: failing over is the faster retry
# (botocore's backoff would add seconds to the time to first token).
NO_RETRIES = {"total_max_attempts": 1}


def sagemaker_client_config(max_connections: int, read_timeout: float = 120.0) -> AioConfig:
    """One client is shared by all streams: its connection pool must hold one connection per stream."""
    return AioConfig(
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
    )


def client_failure(exc: botocore.exceptions.ClientError, endpoint: str, started: bool) -> EndpointFailure:
    """The domain error for an error SageMaker returned (also EventStreamError: mid-stream errors)."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    message = str(err.get("Message", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("ThrottlingException", "TooManyRequestsException") or "throttl" in message.lower():
        return Throttled(f"endpoint {endpoint} is throttling requests; try again shortly", started=started)
    if code == "ValidationError" and "not found" in message:
        return NotFound(f"endpoint {endpoint} does not exist ({message})", started=started)
    if code in ("ModelNotReadyException", "ServiceUnavailable") or status == 503:
        return Unavailable(f"endpoint {endpoint} is not available ({code}: {message})", started=started)
    if code == "ModelStreamError":
        return EndpointError(
            f"endpoint {endpoint} failed mid-stream (ModelStreamError: {message})", started=started
        )
    if code == "InternalStreamFailure":
        return EndpointError(
            f"endpoint {endpoint} stream failed (InternalStreamFailure: {message})", started=started
        )
    return EndpointError(f"endpoint {endpoint} returned {code}: {message}", started=started)


def botocore_failure(exc: Exception, endpoint: str, started: bool) -> EndpointFailure:
    """Any exception of a call -> its domain error (total: an unknown one is an EndpointError)."""
    if isinstance(exc, EndpointFailure):
        return exc
    if isinstance(exc, botocore.exceptions.ClientError):
        return client_failure(exc, endpoint, started)
    if isinstance(
        exc, botocore.exceptions.ReadTimeoutError | botocore.exceptions.ConnectTimeoutError | TimeoutError
    ):
        return EndpointTimeout(
            f"endpoint {endpoint} timed out (no data within the read timeout)", started=started
        )
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return Unavailable(f"endpoint {endpoint} cannot be reached ({exc})", started=started)
    if isinstance(exc, botocore.exceptions.BotoCoreError):
        return EndpointError(f"calling endpoint {endpoint} failed: {exc}", started=started)
    # a corrupt frame, a dropped connection (aiohttp's errors): never crash the worker
    return EndpointError(f"calling endpoint {endpoint} failed: {type(exc).__name__}: {exc}", started=started)


PRELUDE_LENGTH = 12  # event-stream wire format: total length, headers length, prelude CRC (4 bytes each)


@functools.lru_cache(maxsize=64)
def _parsed_header_block(header_bytes: bytes) -> dict[str, Any]:
    return EventStreamHeaderParser().parse(header_bytes)


class FrameBuffer(EventStreamBuffer):
    """botocore's event-stream frame decoder (prelude, both CRCs, size limits), with the parse of each
    frame's header block memoized by its bytes: every PayloadPart carries the same few headers, and
    botocore's generic header parser is ~60% of the decoder's time per frame (6.5 -> 2.6 us; the pin that
    aiobotocore puts on botocore keeps these internals fixed for a release)."""

    def _parse_headers(self) -> dict[str, Any]:
        header_bytes = self._data[PRELUDE_LENGTH : self._prelude.headers_end]  # type: ignore[attr-defined]
        return dict(_parsed_header_block(header_bytes))  # a copy: a consumer may change its own


async def payload_batches(stream: Any) -> AsyncGenerator[list[bytes], None]:
    """The bytes of the PayloadParts of an `InvokeEndpointWithResponseStream` body, one list per read
    from the network: whatever arrived since the last read (one part when the reader keeps up).

    Frames are decoded and CRC-checked by botocore's own EventStreamBuffer (`FrameBuffer`), fed straight
    from aiohttp's buffer (aiobotocore's own iteration wakes the loop once per HTTP chunk, i.e. per token). A
    PayloadPart's payload *is* its Bytes blob, so it is taken as is: botocore's generic shape parser would
    cost ~40% of the per-token time. Every other message (ModelStreamError, InternalStreamFailure, unknown
    events) goes through botocore's parser, which raises EventStreamError exactly as iterating the stream
    does, after the parts before it were yielded. Without these internals: the public iteration.
    """
    content = getattr(getattr(stream, "_raw_stream", None), "content", None)
    parse = getattr(stream, "_parse_event", None)
    if content is None or parse is None or not hasattr(content, "iter_any"):
        async for event in stream:
            if "PayloadPart" in event:
                yield [event["PayloadPart"].get("Bytes", b"")]
        return
    frames: Any = FrameBuffer()  # (botocore's stubs type the messages it yields wrongly)
    async for data in content.iter_any():
        frames.add_data(data)
        batch: list[bytes] = []
        for message in frames:
            headers = message.headers
            if headers.get(":event-type") == "PayloadPart" and headers.get(":message-type") == "event":
                batch.append(message.payload)
                continue
            if batch:
                yield batch
                batch = []
            event = await parse(message)
            if event and "PayloadPart" in event:
                batch.append(event["PayloadPart"].get("Bytes", b""))
        if batch:
            yield batch


class AioBotocoreTransport:
    """The one `sagemaker-runtime` client all adapters share. aiohttp's connection pool belongs to an
    event loop, so the client is created on the loop that serves requests: on entering `async with`
    (the worker does so at start-up: loading botocore's service model takes a while) or else at first
    use (adapters are built in the model-set poller's thread), and closed on leaving it or by `close()`.
    Region, credentials and endpoint URL come from botocore's usual sources (AWS_REGION,
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, the ECS task role, ...) unless given here."""

    def __init__(self, config: AioConfig, **client_kwargs: Any) -> None:
        self._config = config
        self._kwargs = client_kwargs
        self._clients: dict[bool, Any] = {}  # retry -> client (without retries: made on first need)
        self._exit = AsyncExitStack()
        self._lock: asyncio.Lock | None = None

    async def get(self, retry: bool = True) -> Any:
        client = self._clients.get(retry)
        if client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if (client := self._clients.get(retry)) is None:
                    config = self._config if retry else self._config.merge(AioConfig(retries=NO_RETRIES))
                    creator = get_session().create_client("sagemaker-runtime", config=config, **self._kwargs)
                    client = self._clients[retry] = await self._exit.enter_async_context(creator)
        return client

    async def __aenter__(self) -> AioBotocoreTransport:
        await self.get()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client; a later `get()` creates a new one (on the loop running then)."""
        exit_stack, self._exit, self._clients, self._lock = self._exit, AsyncExitStack(), {}, None
        await exit_stack.aclose()

    async def open(
        self, endpoint: str, body: bytes, *, retry: bool = True
    ) -> AsyncGenerator[list[bytes], None]:
        stream = None
        started = False
        try:
            client = await self.get(retry)
            response = await client.invoke_endpoint_with_response_stream(
                EndpointName=endpoint, Body=body, ContentType="application/json"
            )
            stream = response["Body"]
            async with aclosing(payload_batches(stream)) as batches:
                async for batch in batches:
                    started = True
                    yield batch
        except Exception as exc:  # (a cancellation or a hang-up is not an Exception: it passes through)
            raise botocore_failure(exc, endpoint, started) from exc
        finally:
            if stream is not None:
                stream.close()  # stop generation early (stop string reached, client gone)


# The name the rest of the code base and the tests knew it by.
SageMakerClient = AioBotocoreTransport

Script = Iterable[list[bytes] | EndpointFailure | float]


class MockTransport:
    """A scripted transport for unit tests: `handler(endpoint, body)` returns what that call streams, in
    order: a list of bytes is one batch, a float sleeps that many seconds, an EndpointFailure is raised
    (or the handler raises one at once: a failure before the call was answered). Calls are recorded."""

    def __init__(self, handler: Callable[[str, bytes], Script]) -> None:
        self.handler = handler
        self.calls: list[tuple[str, bytes]] = []
        self.retries: list[bool] = []  # per call: whether the transport was asked to retry
        self.unfinished = 0  # streams that failed or were hung up on before their script ended

    async def open(
        self, endpoint: str, body: bytes, *, retry: bool = True
    ) -> AsyncGenerator[list[bytes], None]:
        self.calls.append((endpoint, body))
        self.retries.append(retry)
        complete = False
        try:
            for step in self.handler(endpoint, body):
                if isinstance(step, EndpointFailure):
                    raise step
                if isinstance(step, float | int):
                    await asyncio.sleep(step)
                    continue
                yield step
            complete = True
        finally:
            self.unfinished += not complete
