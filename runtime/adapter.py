"""One SageMaker streaming endpoint as FastChat generation: request building, the boto3 call, decoding.

An adapter is built once per model spec and shared by every concurrent request to that model: all
per-request state (decoder buffer, assembled text) lives in local variables of `generate_stream`.
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
from contract.decoder import StreamDecodeError, StreamDecoder
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

    def generate_stream(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """FastChat chunks (cumulative text); the last one carries finish_reason or an error_code."""
        spec = self.spec
        try:
            body = build_request(spec, params)
        except RequestError as exc:
            yield error_chunk(spec.name, str(exc), ErrorCode.VALIDATION_TYPE_ERROR)
            return
        assembler = OutputAssembler(
            stop=normalize_stop(params.get("stop")), prompt_tokens=approx_token_count(str(params["prompt"]))
        )
        decoder = StreamDecoder(spec)
        stream = None
        try:
            response = self._client.invoke_endpoint_with_response_stream(
                EndpointName=spec.endpoint_name,
                Body=json.dumps(body).encode(),
                ContentType="application/json",
            )
            stream = response["Body"]
            for decoded in decoder.decode(payload_parts(stream)):
                if decoded.error is not None:
                    message = f"endpoint {spec.endpoint_name} streamed an error: {decoded.error}"
                    yield error_chunk(spec.name, message)
                    return
                chunk = assembler.push(decoded)
                if chunk is not None:
                    yield chunk
                if assembler.stopped:
                    break
            yield assembler.finish()
        except StreamDecodeError as exc:
            yield error_chunk(spec.name, str(exc))
        except botocore.exceptions.ClientError as exc:  # includes EventStreamError (mid-stream errors)
            message, code = _client_error_message(exc, spec.endpoint_name)
            yield error_chunk(spec.name, message, code)
        except (botocore.exceptions.ReadTimeoutError, botocore.exceptions.ConnectTimeoutError):
            yield error_chunk(spec.name, f"endpoint {spec.endpoint_name} timed out")
        except botocore.exceptions.BotoCoreError as exc:
            yield error_chunk(spec.name, f"calling endpoint {spec.endpoint_name} failed: {exc}")
        except Exception as exc:  # a corrupt frame, a dropped connection: never crash the worker
            yield error_chunk(
                spec.name, f"calling endpoint {spec.endpoint_name} failed: {type(exc).__name__}: {exc}"
            )
        finally:
            if stream is not None:
                stream.close()  # stop generation early (stop string reached, client gone)
