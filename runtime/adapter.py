"""One SageMaker streaming endpoint as FastChat generation: request building, the call, decoding.

The endpoint is called through a transport (runtime/transport.py: aiobotocore on the worker's event loop,
mapping botocore's failures to domain errors), so one slow endpoint never stalls the others because
nothing blocks the loop. An adapter is built once per model spec and shared by every
concurrent request to that model: all per-request state (decoder buffer, assembled text) lives in that
request's `Generation`. Every failure becomes a FastChat error chunk; nothing raises into the worker.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastchat.constants import ErrorCode

from contract.assembler import OutputAssembler
from contract.chunk import (
    ENDPOINT_ERROR,
    ENDPOINT_KINDS,
    INTERNAL,
    INVALID_REQUEST,
    TIMEOUT,
    UNAVAILABLE,
    WorkerChunk,
    error_chunk,
    error_kind,
)
from contract.decoder import StreamDecodeError, StreamDecoder, StreamEvent
from contract.request import RequestError, build_request, normalize_stop
from contract.spec import ModelSpec, Variant
from contract.tokens import approx_token_count
from rollout.assign import rank_variants
from rollout.breaker import OPEN, Breaker
from runtime.params import check_params
from runtime.transport import (
    EndpointFailure,
    EndpointTransport,
)
from runtime.variants import Attempt, Breakers, Recorder, sticky_key

DEFAULT_FIRST_TOKEN_TIMEOUT = 60.0
DEFAULT_FAILOVER_FIRST_TOKEN_TIMEOUT = 10.0
log = structlog.get_logger("worker")


@dataclass(frozen=True)
class Route:
    """One variant of a model on this worker: its endpoint's spec and breaker, and why warm-up left it
    out (then its weight is 0: never chosen, never failed over to)."""

    variant: Variant
    breaker: Breaker
    excluded: str | None = None

    @property
    def endpoint_name(self) -> str:
        return self.variant.endpoint_name

    @property
    def weight(self) -> float:
        return 0.0 if self.excluded else float(self.variant.weight)

    def describe(self) -> dict[str, Any]:
        return {
            "endpoint_name": self.endpoint_name,
            "hash": self.variant.spec.config_hash,  # what a vote on this variant's answer names
            "weight": self.weight,
            "configured_weight": self.variant.weight,
            "primary": self.variant.primary,
            "excluded": self.excluded,
            "breaker": self.breaker.describe(),
            # the canonical fields this variant's config maps (the API refuses parameters it cannot carry)
            "request_fields": sorted(self.variant.spec.request_mapping),
            "response_fields": sorted(self.variant.spec.response_mapping),
        }


class SageMakerAdapter:
    """Serves one model name: its variants (one endpoint each; a model without `variants` has one),
    through a transport (runtime/transport.py: aiobotocore in production, a scripted one in unit tests).

    Per request: the variants ranked for the conversation's sticky key (rollout/assign.py; skipped when
    only one can serve), the first whose breaker lets it through is called; when it fails on the
    endpoint's side BEFORE any chunk was sent (refused, dropped, throttled, 5xx, not ready, no first
    token in time), the next one in rank order is tried; once a chunk was sent, a failure is the
    answer (never a second, spliced one). When every breaker is open, the sticky choice is tried anyway.
    An attempt with another variant behind it waits `failover_first_token_timeout` for its first token
    (a hung endpoint costs the user that long, not the full timeout; 0: the full one); the last gets
    `first_token_timeout`.
    """

    def __init__(
        self,
        spec: ModelSpec,
        client: EndpointTransport | None,
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
        *,
        failover_first_token_timeout: float = DEFAULT_FAILOVER_FIRST_TOKEN_TIMEOUT,
        breakers: Breakers | None = None,
        excluded: Mapping[str, str] | None = None,
        assistant_role: str | None = None,
        recorder: Recorder | None = None,
    ) -> None:
        self.spec = spec
        self._client = client
        self.first_token_timeout = first_token_timeout
        self.failover_first_token_timeout = (
            min(failover_first_token_timeout, first_token_timeout)
            if failover_first_token_timeout > 0
            else first_token_timeout
        )
        breakers = breakers or Breakers()
        excluded = excluded or {}
        self.routes = tuple(
            Route(v, breakers.get(v.endpoint_name), excluded.get(v.endpoint_name)) for v in spec.variants()
        )
        self._routable = [r for r in self.routes if r.weight > 0]
        # What every variant that can answer maps (a request may reach any of them: its sticky choice or a
        # failover), so a parameter is carried whichever answers, or refused by the API.
        answering = [r.variant.spec for r in self._routable or self.routes]
        self.request_fields = frozenset.intersection(*(frozenset(s.request_mapping) for s in answering))
        self.response_fields = frozenset.intersection(*(frozenset(s.response_mapping) for s in answering))
        self.assistant_role = assistant_role
        self.recorder = recorder

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def transport(self) -> EndpointTransport | None:
        return self._client

    def ranked(self, params: Mapping[str, Any]) -> list[Route]:
        """The routes that may take this request, the sticky choice first."""
        if len(self._routable) <= 1:
            return self._routable  # no choice to make: no key, no hashing
        return rank_variants(self._routable, sticky_key(params, self.assistant_role))

    def start(self, params: Mapping[str, Any], route: Route | None = None, retry: bool = True) -> Generation:
        """One request's state on one variant (the primary by default); nothing is called until its
        parts are read. `retry` False: another variant is behind this one (no retries, the shorter
        first-token timeout)."""
        spec = route.variant.spec if route is not None else self.spec
        timeout = self.first_token_timeout if retry else self.failover_first_token_timeout
        return Generation(spec, self._client, params, timeout, retry)

    async def generate_stream(
        self, params: Mapping[str, Any], attempts: list[Attempt] | None = None
    ) -> AsyncIterator[WorkerChunk]:
        """FastChat chunks (cumulative text), one per network read that grew the text; the last one
        carries finish_reason or an error_code. Each variant tried is appended to `attempts`."""
        attempts = [] if attempts is None else attempts
        ranked = self.ranked(params)
        if not ranked:
            reasons = "; ".join(f"{r.endpoint_name}: {r.excluded or 'weight 0'}" for r in self.routes)
            yield error_chunk(self.name, f"no variant can take requests ({reasons})", *_NO_VARIANT)
            return
        failure: WorkerChunk | None = None
        i = 0
        while True:
            route = None
            while route is None and i < len(ranked):
                route = ranked[i] if ranked[i].breaker.allow() else None
                i += 1
            if route is None:
                if failure is not None:  # failed over as far as the breakers allow
                    yield failure
                    return
                route = ranked[0]  # every breaker is open: the sticky choice still gets the request
            elif not attempts and route is not ranked[0]:
                self._skipped(ranked[0], attempts)
            attempt = Attempt(self.name, route.endpoint_name, time.monotonic())
            attempts.append(attempt)
            try:
                failure = None
                fallback = any(r.breaker.state != OPEN for r in ranked[i:])
                async with aclosing(self._attempt(route, params, attempt, not fallback)) as chunks:
                    async for chunk in chunks:
                        if attempt.endpoint_failure and attempt.ttft_ms is None and i < len(ranked):
                            attempt.failed_over, failure = True, chunk  # before any token: try the next
                        else:
                            yield chunk
                if failure is None:
                    return
            finally:
                self._settle(route, attempt)

    async def _attempt(
        self, route: Route, params: Mapping[str, Any], attempt: Attempt, retry: bool
    ) -> AsyncGenerator[WorkerChunk, None]:
        """One variant's chunks; `attempt` learns the first chunk's time and the failure's kind before
        the last chunk is handed over."""
        generation = self.start(params, route, retry)
        async with aclosing(generation.batches()) as batches:  # closed early if our reader goes away
            async for data in batches:
                chunk = generation.feed(data)
                if chunk is not None:
                    if attempt.ttft_ms is None:
                        attempt.ttft_ms = (time.monotonic() - attempt.started) * 1000
                    yield chunk
        final = generation.finish()
        final["endpoint"] = route.endpoint_name  # the variant that answered (the arena's votes name it)
        kind = error_kind(final)
        if kind is not None:
            attempt.error_kind, attempt.endpoint_failure = kind, kind in ENDPOINT_KINDS
        elif attempt.ttft_ms is None:
            attempt.ttft_ms = (time.monotonic() - attempt.started) * 1000
        yield final

    def _skipped(self, route: Route, attempts: list[Attempt]) -> None:
        """The sticky choice was skipped (its breaker is open): for the rollout's counts that is a request
        of its share it could not serve (an error), not fed to its breaker (open already)."""
        attempt = Attempt(self.name, route.endpoint_name, time.monotonic(), error_kind="circuit_open")
        attempt.endpoint_failure = attempt.failed_over = True
        attempts.append(attempt)
        self._record(attempt)

    def _settle(self, route: Route, attempt: Attempt) -> None:
        """The attempt's outcome to its endpoint's breaker and the recorder (a client gone before the
        first token, or a request the spec refused, tells nothing about the endpoint)."""
        if attempt.endpoint_failure:
            route.breaker.record(False)
        elif attempt.ttft_ms is not None:
            route.breaker.record(True)
        if attempt.known:
            self._record(attempt)

    def _record(self, attempt: Attempt) -> None:
        if self.recorder is not None:
            try:
                self.recorder(attempt)
            except Exception:
                log.exception("outcome_record_failed", model=self.name, endpoint=attempt.endpoint)

    def describe(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.routes]

    def excluded(self) -> dict[str, str]:
        """The variants warm-up left out: {endpoint: why}."""
        return {r.endpoint_name: r.excluded for r in self.routes if r.excluded}


async def endpoint_stream(
    spec: ModelSpec, transport: EndpointTransport, params: Mapping[str, Any], timeout: float
) -> AsyncIterator[WorkerChunk]:
    """One endpoint's chunks for one request, without variants (the warm-up's probe of one variant)."""
    generation = Generation(spec, transport, params, timeout)
    async with aclosing(generation.batches()) as batches:
        async for data in batches:
            chunk = generation.feed(data)
            if chunk is not None:
                yield chunk
    yield generation.finish()


_NO_VARIANT = (ErrorCode.ENGINE_OVERLOADED, UNAVAILABLE)


class Generation:
    """One request to the endpoint, in two halves.

    `batches()` is the I/O: it calls the endpoint through the transport and yields, per network read, the
    bytes of the PayloadParts that arrived (a failure ends it and is kept as an error chunk). `feed()` is
    pure: it decodes any number of parts at once into one FastChat chunk. A reader that lags gets fewer,
    larger updates for less CPU (one decode pass and one chunk per read instead of per token), and a
    reader that keeps up gets every token at once. Setting `done` (stop string reached, error) ends
    `batches()` and closes the endpoint's stream. Without a transport there is only the pure half
    (`batches()` is empty).
    """

    def __init__(
        self,
        spec: ModelSpec,
        transport: EndpointTransport | None,
        params: Mapping[str, Any],
        first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT,
        retry: bool = True,
    ) -> None:
        self.spec = spec
        self._transport = transport
        self._first_token_timeout = first_token_timeout
        self._retry = retry  # False: the call is not retried (another variant is there to fail over to)
        self.failure: WorkerChunk | None = None
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
        if self.body is None or self._transport is None:
            return
        endpoint = self.spec.endpoint_name
        # The call (with botocore's retries) and the first payload share one deadline: botocore's read
        # timeout alone would let an endpoint that never answers hold the client for minutes.
        first_read = asyncio.timeout(self._first_token_timeout)
        try:
            async with aclosing(
                self._transport.open(endpoint, orjson.dumps(self.body), retry=self._retry)
            ) as batches:
                async with first_read:
                    batch = await anext(batches, None)
                while batch is not None:
                    yield b"".join(batch)  # one part: no copy
                    if self.done:
                        break
                    batch = await anext(batches, None)
        except EndpointFailure as exc:
            self._fail(exc.message, exc.code, exc.kind)
        except TimeoutError:
            if not first_read.expired():
                raise
            message = f"endpoint {endpoint} sent no token within {self._first_token_timeout:g} s"
            self._fail(message, ErrorCode.CONTROLLER_WORKER_TIMEOUT, TIMEOUT)

    def feed(self, data: bytes) -> WorkerChunk | None:
        """Decode `data` (one or more parts, joined); a chunk when the visible text grew."""
        if self.done:
            return None
        try:
            events = self._decoder.feed(data)
        except StreamDecodeError as exc:
            self._fail(str(exc))
            return None
        return self._push(events)

    def finish(self) -> WorkerChunk:
        """The last chunk: the error, or the full text with finish_reason and usage."""
        if not self.done:
            try:
                self._push(self._decoder.close())
            except StreamDecodeError as exc:
                self._fail(str(exc))
        if self.failure is not None:
            return self.failure
        return self._assembler.finish()

    def _push(self, events: list[StreamEvent]) -> WorkerChunk | None:
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
