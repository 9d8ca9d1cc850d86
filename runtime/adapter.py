"""One SageMaker streaming endpoint as FastChat generation: request building, the call, decoding.

The endpoint is called with aiobotocore (botocore's request signing, retries and event-stream decoding,
over aiohttp) on the worker's event loop: no thread per stream, and one slow endpoint never stalls
the others because nothing blocks the loop. An adapter is built once per model spec and shared by every
concurrent request to that model: all per-request state (decoder buffer, assembled text) lives in that
request's `Generation`. Every failure becomes a FastChat error chunk; nothing raises into the worker.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import AsyncExitStack, aclosing
from typing import Any

import botocore.exceptions
import orjson
from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.eventstream import EventStreamBuffer, EventStreamHeaderParser

# FastChat's error codes (fastchat.constants; imported lazily-free: it has no heavy imports).
from fastchat.constants import ErrorCode

from contract.assembler import OutputAssembler
from contract.decoder import StreamDecodeError, StreamDecoder, StreamEvent
from contract.request import RequestError, build_request, normalize_stop
from contract.spec import ModelSpec
from contract.tokens import approx_token_count
from runtime.params import check_params

DEFAULT_FIRST_TOKEN_TIMEOUT = 60.0


def sagemaker_client_config(max_connections: int, read_timeout: float = 120.0) -> AioConfig:
    """One client is shared by all streams: its connection pool must hold one connection per stream."""
    return AioConfig(
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
    )


class SageMakerClient:
    """The one `sagemaker-runtime` client all adapters share. aiohttp's connection pool belongs to an
    event loop, so the client is created on the loop that serves requests: on entering `async with`
    (the worker does so at start-up: loading botocore's service model takes a while) or else at first
    use (adapters are built in the model-set poller's thread), and closed on leaving it or by `close()`.
    Region, credentials and endpoint URL come from botocore's usual sources (AWS_REGION,
    AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, the ECS task role, ...) unless given here."""

    def __init__(self, config: AioConfig, **client_kwargs: Any) -> None:
        self._config = config
        self._kwargs = client_kwargs
        self._client: Any = None
        self._exit = AsyncExitStack()
        self._lock: asyncio.Lock | None = None

    async def get(self) -> Any:
        if self._client is None:
            self._lock = self._lock or asyncio.Lock()
            async with self._lock:
                if self._client is None:
                    creator = get_session().create_client(
                        "sagemaker-runtime", config=self._config, **self._kwargs
                    )
                    self._client = await self._exit.enter_async_context(creator)
        return self._client

    async def __aenter__(self) -> SageMakerClient:
        await self.get()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the client; a later `get()` creates a new one (on the loop running then)."""
        exit_stack, self._exit, self._client, self._lock = self._exit, AsyncExitStack(), None, None
        await exit_stack.aclose()


# What went wrong, for an API in front of the worker (README "Worker failure domains and errors"):
# FastChat's error_code says which HTTP status, `error.kind` says the same without parsing the text.
THROTTLED = "throttled"  # RATE_LIMIT: 429
TIMEOUT = "timeout"  # CONTROLLER_WORKER_TIMEOUT: 504
UNAVAILABLE = "unavailable"  # ENGINE_OVERLOADED: 503
ENDPOINT_ERROR = "endpoint_error"  # INTERNAL_ERROR: 502
NOT_FOUND = "not_found"  # INVALID_MODEL: 404
INVALID_REQUEST = "invalid_request"  # VALIDATION_TYPE_ERROR, PARAM_OUT_OF_RANGE: 400
INTERNAL = "internal"  # INTERNAL_ERROR: 502 (500 by kind)


def error_chunk(
    model: str,
    message: str,
    code: int = ErrorCode.INTERNAL_ERROR,
    kind: str = ENDPOINT_ERROR,
    *,
    endpoint: str | None = None,
    param: str | None = None,
) -> dict[str, Any]:
    """A FastChat error frame: `text` is what users see (FastChat's UI and API show it as is), and the
    extra `error` object carries the same facts for machines."""
    error: dict[str, Any] = {"kind": kind, "model": model, "endpoint": endpoint}
    if param is not None:
        error["param"] = param
    text = f"model {model}: {message}" if model else message
    return {"text": text, "error_code": int(code), "error": error}


def _client_error(exc: botocore.exceptions.ClientError, endpoint: str) -> tuple[str, int, str]:
    """The message, FastChat error code and kind for an error SageMaker returned."""
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    message = str(err.get("Message", ""))
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("ThrottlingException", "TooManyRequestsException") or "throttl" in message.lower():
        return (
            f"endpoint {endpoint} is throttling requests; try again shortly",
            ErrorCode.RATE_LIMIT,
            THROTTLED,
        )
    if code == "ValidationError" and "not found" in message:
        return f"endpoint {endpoint} does not exist ({message})", ErrorCode.ENGINE_OVERLOADED, UNAVAILABLE
    if code in ("ModelNotReadyException", "ServiceUnavailable") or status == 503:
        return (
            f"endpoint {endpoint} is not available ({code}: {message})",
            ErrorCode.ENGINE_OVERLOADED,
            UNAVAILABLE,
        )
    if code == "ModelStreamError":
        return (
            f"endpoint {endpoint} failed mid-stream (ModelStreamError: {message})",
            ErrorCode.INTERNAL_ERROR,
            ENDPOINT_ERROR,
        )
    if code == "InternalStreamFailure":
        return (
            f"endpoint {endpoint} stream failed (InternalStreamFailure: {message})",
            ErrorCode.INTERNAL_ERROR,
            ENDPOINT_ERROR,
        )
    return f"endpoint {endpoint} returned {code}: {message}", ErrorCode.INTERNAL_ERROR, ENDPOINT_ERROR


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


class SageMakerAdapter:
    """Serves one model spec through `InvokeEndpointWithResponseStream`."""

    def __init__(
        self,
        spec: ModelSpec,
        client: SageMakerClient,
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
    ) -> None:
        self.spec = spec
        self._client = client
        self.first_token_timeout = first_token_timeout

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, params: Mapping[str, Any]) -> Generation:
        """One request's state; nothing is called until its parts are read."""
        return Generation(self.spec, self._client, params, self.first_token_timeout)

    async def generate_stream(self, params: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """FastChat chunks (cumulative text), one per network read that grew the text; the last one
        carries finish_reason or an error_code."""
        generation = self.start(params)
        async with aclosing(generation.batches()) as batches:  # closed early if our reader goes away
            async for data in batches:
                chunk = generation.feed(data)
                if chunk is not None:
                    yield chunk
        yield generation.finish()


class Generation:
    """One request to the endpoint, in two halves.

    `batches()` is the I/O: it calls the endpoint and yields, per network read, the bytes of the
    PayloadParts that arrived (a failure ends it and is kept as an error chunk). `feed()` is pure: it
    decodes any number of parts at once into one FastChat chunk. A reader that lags gets fewer, larger
    updates for less CPU (one decode pass and one chunk per read instead of per token), and a reader that
    keeps up gets every token at once. Setting `done` (stop string reached, error) ends `batches()` and
    closes the endpoint's stream. Without a client there is only the pure half (`batches()` is empty).
    """

    def __init__(
        self,
        spec: ModelSpec,
        client: SageMakerClient | None,
        params: Mapping[str, Any],
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
    ) -> None:
        self.spec = spec
        self._client = client
        self._first_token_timeout = first_token_timeout
        self.failure: dict[str, Any] | None = None
        self.body: dict[str, Any] | None = None
        if (invalid := check_params(params)) is not None:
            self._fail(invalid.message, invalid.code, INVALID_REQUEST, invalid.param)
        else:
            try:
                self.body = build_request(spec, params)
            except RequestError as exc:
                self._fail(str(exc), ErrorCode.VALIDATION_TYPE_ERROR, INVALID_REQUEST)
            except Exception as exc:  # a spec that cannot build a request: this request fails, not the worker
                self._fail(f"its config cannot build a request ({type(exc).__name__}: {exc})", kind=INTERNAL)
        self._assembler = OutputAssembler(
            stop=normalize_stop(params.get("stop")) if self.body is not None else [],
            prompt_tokens=approx_token_count(str(params.get("prompt"))),
            logprobs=[] if params.get("logprobs") else None,
        )
        self._decoder = StreamDecoder(spec)

    @property
    def done(self) -> bool:
        return self.failure is not None or self._assembler.stopped

    async def batches(self) -> AsyncGenerator[bytes, None]:
        if self.body is None or self._client is None:
            return
        endpoint = self.spec.endpoint_name
        stream = None
        # The call (with botocore's retries) and the first payload share one deadline: botocore's read
        # timeout alone would let an endpoint that never answers hold the client for minutes.
        deadline = asyncio.get_running_loop().time() + self._first_token_timeout
        calling, first_read = asyncio.timeout_at(deadline), asyncio.timeout_at(deadline)
        try:
            async with calling:
                client = await self._client.get()
                response = await client.invoke_endpoint_with_response_stream(
                    EndpointName=endpoint, Body=orjson.dumps(self.body), ContentType="application/json"
                )
                stream = response["Body"]
            async with aclosing(payload_batches(stream)) as batches:
                async with first_read:
                    batch = await anext(batches, None)
                while batch is not None:
                    yield b"".join(batch)  # one part: no copy
                    if self.done:
                        break
                    batch = await anext(batches, None)
        except botocore.exceptions.ClientError as exc:  # includes EventStreamError (mid-stream errors)
            message, code, kind = _client_error(exc, endpoint)
            self._fail(message, code, kind)
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError, TimeoutError):
            if calling.expired() or first_read.expired():
                message = f"endpoint {endpoint} sent no token within {self._first_token_timeout:g} s"
            else:
                message = f"endpoint {endpoint} timed out (no data within the read timeout)"
            self._fail(message, ErrorCode.CONTROLLER_WORKER_TIMEOUT, TIMEOUT)
        except botocore.exceptions.EndpointConnectionError as exc:
            self._fail(
                f"endpoint {endpoint} cannot be reached ({exc})", ErrorCode.ENGINE_OVERLOADED, UNAVAILABLE
            )
        except botocore.exceptions.BotoCoreError as exc:
            self._fail(f"calling endpoint {endpoint} failed: {exc}")
        except Exception as exc:  # a corrupt frame, a dropped connection: never crash the worker
            self._fail(f"calling endpoint {endpoint} failed: {type(exc).__name__}: {exc}")
        finally:
            if stream is not None:
                stream.close()  # stop generation early (stop string reached, client gone)

    def feed(self, data: bytes) -> dict[str, Any] | None:
        """Decode `data` (one or more parts, joined); a chunk when the visible text grew."""
        if self.done:
            return None
        try:
            events = self._decoder.feed(data)
        except StreamDecodeError as exc:
            self._fail(str(exc))
            return None
        return self._push(events)

    def finish(self) -> dict[str, Any]:
        """The last chunk: the error, or the full text with finish_reason and usage."""
        if not self.done:
            try:
                self._push(self._decoder.close())
            except StreamDecodeError as exc:
                self._fail(str(exc))
        if self.failure is not None:
            return self.failure
        return self._assembler.finish()

    def _push(self, events: list[StreamEvent]) -> dict[str, Any] | None:
        for i, event in enumerate(events):
            if event.error is not None:  # the text before it is still shown, then the error
                chunk = self._assembler.push_all(events[:i])
                self._fail(f"endpoint {self.spec.endpoint_name} streamed an error: {event.error}")
                return chunk
        return self._assembler.push_all(events)

    def _fail(
        self,
        message: str,
        code: int = ErrorCode.INTERNAL_ERROR,
        kind: str = ENDPOINT_ERROR,
        param: str | None = None,
    ) -> None:
        if self.failure is None:
            self.failure = error_chunk(
                self.spec.name, message, code, kind, endpoint=self.spec.endpoint_name, param=param
            )
