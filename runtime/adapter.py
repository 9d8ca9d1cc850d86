"""One SageMaker streaming endpoint as FastChat generation: request building, the boto3 call, decoding.

An adapter is built once per model spec and shared by every concurrent request to that model: all
per-request state (decoder buffer, assembled text) lives in that request's `Generation`.
Every failure becomes a FastChat error chunk; nothing raises into the worker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

import botocore.exceptions
from botocore.config import Config

# FastChat's error codes and message (fastchat.constants; imported lazily-free: it has no heavy imports).
from fastchat.constants import SERVER_ERROR_MSG, ErrorCode

from contract.assembler import OutputAssembler
from contract.decoder import StreamDecodeError, StreamDecoder, StreamEvent
from contract.request import RequestError, build_request, normalize_stop
from contract.spec import ModelSpec
from contract.tokens import approx_token_count


def sagemaker_client_config(max_connections: int, read_timeout: float = 120.0) -> Config:
    """One client is shared by all streams: its connection pool must hold one connection per stream."""
    return Config(
        max_pool_connections=max_connections,
        connect_timeout=5,
        read_timeout=read_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        tcp_keepalive=True,
    )


def error_chunk(model: str, message: str, code: int = ErrorCode.INTERNAL_ERROR) -> dict[str, Any]:
    return {"text": f"{SERVER_ERROR_MSG}\n\n(model {model}: {message})", "error_code": int(code)}


def _client_error_message(exc: botocore.exceptions.ClientError, endpoint: str) -> tuple[str, int]:
    err = exc.response.get("Error", {})
    code = str(err.get("Code", "Unknown"))
    message = str(err.get("Message", ""))
    if code in ("ThrottlingException", "TooManyRequestsException") or "throttl" in message.lower():
        return f"endpoint {endpoint} is throttling requests; try again shortly", ErrorCode.RATE_LIMIT
    if code == "ValidationError" and "not found" in message:
        return f"endpoint {endpoint} does not exist ({message})", ErrorCode.INTERNAL_ERROR
    if code == "ModelStreamError":
        return (
            f"endpoint {endpoint} failed mid-stream (ModelStreamError: {message})",
            ErrorCode.INTERNAL_ERROR,
        )
    if code == "InternalStreamFailure":
        return (
            f"endpoint {endpoint} stream failed (InternalStreamFailure: {message})",
            ErrorCode.INTERNAL_ERROR,
        )
    return f"endpoint {endpoint} returned {code}: {message}", ErrorCode.INTERNAL_ERROR


def payload_parts(stream: Any) -> Iterator[bytes]:
    """The bytes of each PayloadPart of an `InvokeEndpointWithResponseStream` body.

    Frames are decoded and CRC-checked by botocore's own EventStreamBuffer (the stream's raw event
    generator). A PayloadPart's payload *is* its Bytes blob, so it is taken as is: botocore's generic
    shape parser would cost ~40% of the per-token time of a stream. Every other message (ModelStreamError,
    InternalStreamFailure, unknown events) goes through botocore's parser, which raises EventStreamError
    exactly as iterating the stream does. A botocore without these internals gets the public iteration.
    """
    messages, parse = getattr(stream, "_event_generator", None), getattr(stream, "_parse_event", None)
    if messages is None or parse is None:
        for event in stream:
            if "PayloadPart" in event:
                yield event["PayloadPart"].get("Bytes", b"")
        return
    for message in messages:
        headers = message.headers
        if headers.get(":event-type") == "PayloadPart" and headers.get(":message-type") == "event":
            yield message.payload
            continue
        event = parse(message)
        if event and "PayloadPart" in event:
            yield event["PayloadPart"].get("Bytes", b"")


class SageMakerAdapter:
    """Serves one model spec through `InvokeEndpointWithResponseStream`."""

    def __init__(self, spec: ModelSpec, client: Any) -> None:
        self.spec = spec
        self._client = client

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, params: Mapping[str, Any]) -> Generation:
        """One request's state; nothing is called until its parts are read."""
        return Generation(self.spec, self._client, params)

    def generate_stream(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """FastChat chunks (cumulative text), one per PayloadPart that grew the text; the last one
        carries finish_reason or an error_code. (The worker's streaming path batches parts instead.)"""
        generation = self.start(params)
        for part in generation.parts():
            chunk = generation.feed(part)
            if chunk is not None:
                yield chunk
            if generation.done:
                break
        yield generation.finish()


class Generation:
    """One request to the endpoint, in two halves that may run in different threads.

    `parts()` is the I/O: it calls the endpoint and yields the bytes of each PayloadPart (blocking; a
    failure ends it and is kept as an error chunk). `feed()` is pure: it decodes any number of parts at
    once into one FastChat chunk. Feeding whatever arrived since the last chunk was sent costs one
    decode pass and one chunk per batch instead of per token: a reader that lags gets fewer, larger
    updates for less CPU. Setting `done` (stop string reached, error) makes `parts()` close the stream.
    """

    def __init__(self, spec: ModelSpec, client: Any, params: Mapping[str, Any]) -> None:
        self.spec = spec
        self._client = client
        self.failure: dict[str, Any] | None = None
        self.body: dict[str, Any] | None = None
        try:
            self.body = build_request(spec, params)
        except RequestError as exc:
            self.failure = error_chunk(spec.name, str(exc), ErrorCode.VALIDATION_TYPE_ERROR)
        self._assembler = OutputAssembler(
            stop=normalize_stop(params.get("stop")),
            prompt_tokens=approx_token_count(str(params.get("prompt"))),
        )
        self._decoder = StreamDecoder(spec)

    @property
    def done(self) -> bool:
        return self.failure is not None or self._assembler.stopped

    def parts(self) -> Iterator[bytes]:
        if self.body is None:
            return
        endpoint = self.spec.endpoint_name
        stream = None
        try:
            response = self._client.invoke_endpoint_with_response_stream(
                EndpointName=endpoint, Body=json.dumps(self.body).encode(), ContentType="application/json"
            )
            stream = response["Body"]
            for part in payload_parts(stream):
                yield part
                if self.done:
                    break
        except botocore.exceptions.ClientError as exc:  # includes EventStreamError (mid-stream errors)
            message, code = _client_error_message(exc, endpoint)
            self._fail(message, code)
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError):
            self._fail(f"endpoint {endpoint} timed out")
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

    def _fail(self, message: str, code: int = ErrorCode.INTERNAL_ERROR) -> None:
        if self.failure is None:
            self.failure = error_chunk(self.spec.name, message, code)
