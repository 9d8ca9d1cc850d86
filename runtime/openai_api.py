"""The OpenAI-compatible API (`sagemaker-fastchat api`): a small Starlette app over FastChat's controller
and worker protocol, replacing FastChat's `openai_api_server`.

Why our own app: FastChat's server built a new httpx client (with an SSL context) per chat and made four
more HTTP calls per request (controller lookups, /model_details, /count_token), costing 30-38 ms per first
token and 80% of the worker's throughput, and its errors were not OpenAI's. Here: one aiohttp connection
pool for the process; the live set (names, worker addresses, context lengths, templates) cached and
refreshed in the background about once a second and on a miss, so a chat is one call to the worker;
frames parsed incrementally and streamed through as they arrive (no buffering: a slow client slows its
worker stream); chunks encoded with orjson. Translation (validation, prompts, chunks, errors) is pure, in
`runtime/openai_protocol.py`. It speaks only FastChat's worker protocol, so any FastChat worker registered
with the controller is served; ours also publishes endpoints, templates and context lengths (/model-set).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import orjson
import structlog
from fastchat.conversation import Conversation, get_conv_template
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route, Router

from contract.chunk import INVALID_REQUEST
from runtime import openai_protocol as p

log = structlog.get_logger("api")

MAX_BODY_BYTES = 4 * 1024 * 1024
REFRESH_INTERVAL = 1.0
MISS_REFRESH_GAP = 0.2  # an unknown model refreshes the live set at most this often
FOREIGN_TEMPLATE_TTL = 30.0  # templates of workers that do not publish /model-set


@dataclass(frozen=True)
class Settings:
    controller_address: str = "http://127.0.0.1:21001"
    api_keys: tuple[str, ...] = ()
    max_n: int = p.DEFAULT_MAX_N
    max_body_bytes: int = MAX_BODY_BYTES
    worker_timeout: float = 130.0  # above the worker's own 120 s, so its clearer error arrives first
    refresh_interval: float = REFRESH_INTERVAL


# --- the I/O edge ------------------------------------------------------------------------------------
class Http(Protocol):
    """What the API needs from HTTP (aiohttp in production, a fake in unit tests)."""

    async def get_json(self, url: str) -> Any: ...

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any: ...

    def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]: ...


class WorkerUnreachable(Exception):
    """The worker could not be connected to (nothing was sent: safe to retry elsewhere)."""


class WorkerSilent(Exception):
    """The worker sent nothing for the read timeout."""


class WorkerRefused(Exception):
    """The worker answered the request with an error status and a FastChat error frame (e.g. a parameter
    its own check refuses): the request's fault, not the worker's, so no retry."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(str(frame.get("text", "")))
        self.frame = frame


class AiohttpClient:
    """One aiohttp session (one connection pool, keep-alive) for every call of this process."""

    def __init__(self, read_timeout: float) -> None:
        # Idle connections are dropped before uvicorn's own keep-alive timeout (5 s) closes them: reusing
        # a connection the server is closing fails the request.
        connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300, keepalive_timeout=4)
        # No sock_read: aiohttp moves a timer on every read for it (a tenth of the API's CPU at one token
        # per read); streams are watched by `_Silence` instead.
        self.session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=5),
            json_serialize=lambda v: orjson.dumps(v).decode(),
        )
        self.read_timeout = read_timeout
        self._short = aiohttp.ClientTimeout(total=5)

    async def get_json(self, url: str) -> Any:
        async with self.session.get(url, timeout=self._short) as r:
            if r.status != 200:
                return None
            return orjson.loads(await r.read())

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any:
        async with self.session.post(
            url, data=orjson.dumps(body), timeout=self._short, headers={"Content-Type": "application/json"}
        ) as r:
            r.raise_for_status()
            return orjson.loads(await r.read())

    async def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        try:
            async with asyncio.timeout(self.read_timeout):
                response = await self.session.post(
                    url, data=orjson.dumps(body), headers={"Content-Type": "application/json"}
                )
        except TimeoutError as exc:
            raise WorkerSilent() from exc
        except aiohttp.ClientError as exc:  # refused, reset, closed: no answer, so retrying is safe
            raise WorkerUnreachable(f"{type(exc).__name__}: {exc}") from exc
        silence = _Silence(response.content, self.read_timeout)
        try:
            if response.status != 200:
                raise _refusal(response.status, await _read_some(response.content, MAX_REFUSAL_BYTES))
            async for data in response.content.iter_any():
                silence.reading = False  # while the client takes it, the worker owes us nothing
                yield data
                silence.reading, silence.last = True, silence.loop.time()
        except TimeoutError as exc:
            raise WorkerSilent() from exc
        except aiohttp.ClientError as exc:
            raise WorkerUnreachable(f"the connection broke: {type(exc).__name__}") from exc
        finally:
            silence.handle.cancel()
            response.close()

    async def close(self) -> None:
        await self.session.close()


MAX_REFUSAL_BYTES = 64 * 1024  # of an error answer's body read to find its FastChat frame


async def _read_some(content: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to `limit` bytes (one read returns only what has arrived)."""
    body = bytearray()
    while len(body) < limit and (part := await content.read(limit - len(body))):
        body += part
    return bytes(body)


def _refusal(status: int, body: bytes) -> Exception:
    """A worker's non-200 answer: the request's own fault when the worker's frame says so (its parameter
    check: kind invalid_request), else the worker as unreachable, so the API refreshes the live set and
    retries once elsewhere (e.g. a 404 from a worker that no longer serves the model)."""
    try:
        frame = orjson.loads(body.split(b"\0", 1)[0])
    except orjson.JSONDecodeError:
        frame = None
    error = frame.get("error") if isinstance(frame, dict) else None
    if isinstance(frame, dict) and isinstance(error, dict) and error.get("kind") == INVALID_REQUEST:
        return WorkerRefused(frame)
    return WorkerUnreachable(f"HTTP {status}")


class _Silence:
    """Fails a stream's read with TimeoutError once it has waited `seconds` for the worker: one timer per
    stream, re-armed only when it fires; per read the reader just stamps when it started waiting again
    (`reading`, `last`), so a slow client (backpressure) is not taken for a silent worker."""

    def __init__(self, content: aiohttp.StreamReader, seconds: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.content, self.seconds = content, seconds
        self.reading, self.last = True, self.loop.time()
        self.handle = self.loop.call_at(self.last + seconds, self._check)

    def _check(self) -> None:
        now = self.loop.time()
        due = self.last + self.seconds if self.reading else now + self.seconds
        if now >= due:
            self.content.set_exception(TimeoutError())
        else:
            self.handle = self.loop.call_at(due, self._check)


# --- the live set --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """Where a model is served, and what its worker published about it."""

    model: str
    address: str
    endpoint: str | None = None  # our worker publishes each model's SageMaker endpoint
    conv_template: str | None = None
    context_length: int | None = None
    version: str | None = None  # the spec hash (ours): a changed spec gets its template again
    # The canonical fields the model's config maps (ours; None for other workers: nothing is refused)
    request_fields: frozenset[str] | None = None
    response_fields: frozenset[str] | None = None

    @property
    def where(self) -> str:
        return f"endpoint {self.endpoint}" if self.endpoint else f"worker {self.address}"


@dataclass
class _Worker:
    address: str
    targets: dict[str, Target] = field(default_factory=dict)


class Directory:
    """The controller's live set, cached: model names in the controller's order, each with its workers.

    Refreshed in the background every `interval` and at once on a miss (coalesced, at most every 0.2 s):
    one `/list_models` call, one description call per known worker (our worker's `/model-set`, any
    other's `/worker_get_status`), and `/get_worker_address` only for names no known worker serves.
    """

    def __init__(self, http: Http, controller: str, interval: float = REFRESH_INTERVAL) -> None:
        self.http, self.controller, self.interval = http, controller.rstrip("/"), interval
        self.names: list[str] = []
        self.targets: dict[str, list[Target]] = {}
        self._workers: dict[str, _Worker] = {}
        self._contexts: dict[tuple[str, str], int | None] = {}
        self._templates: dict[tuple[str, str, str | None], tuple[Conversation, float]] = {}
        self._refreshing: asyncio.Future[None] | None = None
        self._last = 0.0
        self._turn = 0
        self.last_error: str | None = None

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Exception as exc:  # a malformed answer must not stop the refresh loop
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("live_set_refresh_failed", error=self.last_error)
            await asyncio.sleep(self.interval)

    async def refresh(self) -> None:
        """One refresh; concurrent callers share the one in flight."""
        if self._refreshing is not None:
            return await asyncio.shield(self._refreshing)
        self._refreshing = asyncio.ensure_future(self._refresh())
        try:
            await asyncio.shield(self._refreshing)
        finally:
            self._refreshing = None

    async def _refresh(self) -> None:
        self._last = time.monotonic()
        try:
            listed = await self.http.post_json(f"{self.controller}/list_models", {})
            names = [str(n) for n in listed.get("models", [])]
        except Exception as exc:  # keep serving the last known set while the controller is away
            self.last_error = f"controller {self.controller}: {type(exc).__name__}: {exc}"
            return
        for address in list(self._workers):
            if not await self._describe(address):
                del self._workers[address]
        covered = {n for w in self._workers.values() for n in w.targets}
        for name in names:
            if name in covered:
                continue
            try:
                found = await self.http.post_json(f"{self.controller}/get_worker_address", {"model": name})
            except Exception:
                continue
            address = str(found.get("address") or "").rstrip("/")
            if address and address not in self._workers and await self._describe(address):
                covered |= set(self._workers[address].targets)
        targets: dict[str, list[Target]] = {}
        for name in names:
            targets[name] = [w.targets[name] for w in self._workers.values() if name in w.targets]
        self.names = [n for n in names if targets[n]]
        self.targets = targets
        self.last_error = None

    async def _describe(self, address: str) -> bool:
        """Learn what a worker serves; False when it cannot be reached."""
        worker = _Worker(address)
        try:
            state = await self.http.get_json(f"{address}/model-set")
            if isinstance(state, Mapping) and isinstance(state.get("models"), list):
                for m in state["models"]:
                    worker.targets[m["name"]] = Target(
                        m["name"],
                        address,
                        m.get("endpoint_name"),
                        m.get("conv_template"),
                        m.get("context_length") or 4096,
                        m.get("hash"),
                        _fields(m.get("request_fields")),
                        _fields(m.get("response_fields")),
                    )
            else:
                status = await self.http.post_json(f"{address}/worker_get_status", {})
                for name in status.get("model_names", []):
                    worker.targets[name] = Target(
                        name, address, context_length=await self._context(address, name)
                    )
        except Exception:
            return False
        self._workers[address] = worker
        return True

    async def _context(self, address: str, name: str) -> int | None:
        key = (address, name)
        if key not in self._contexts:
            details = await self.http.post_json(f"{address}/model_details", {"model": name})
            value = details.get("context_length")
            self._contexts[key] = value if isinstance(value, int) and value > 0 else None
        return self._contexts[key]

    def invalidate(self, address: str) -> None:
        """Forget a worker that refused a connection (the next refresh asks the controller again)."""
        if self._workers.pop(address, None) is not None:
            self.targets = {n: [t for t in ts if t.address != address] for n, ts in self.targets.items()}
            self._last = 0.0  # its models now miss: the next request refreshes at once, not a 404

    async def resolve(self, model: str) -> Target:
        targets = self.targets.get(model)
        if not targets:
            # A miss is answered from a refresh that started after it arrived: one that started before may
            # predate the model (a worker registering again after a controller restart). Misses arriving
            # together share a refresh, and refreshes start at most every MISS_REFRESH_GAP, so a flood of
            # unknown names costs the controller at most a few calls a second and each one waits that long.
            arrived = time.monotonic()
            while self._last < arrived:
                if self._refreshing is None:
                    await asyncio.sleep(max(0.0, MISS_REFRESH_GAP - (time.monotonic() - self._last)))
                await self.refresh()
            targets = self.targets.get(model)
        if not targets:
            raise p.model_not_found(model)
        self._turn += 1
        return targets[self._turn % len(targets)]

    async def template(self, target: Target) -> Conversation:
        """The model's conversation template: by name when our worker published one, else the worker's
        own answer (`/worker_get_conv_template`), cached per spec version (or briefly, for other workers)."""
        if target.conv_template:
            with contextlib.suppress(KeyError):
                return get_conv_template(target.conv_template)
        key = (target.address, target.model, target.version)
        cached = self._templates.get(key)
        now = time.monotonic()
        if cached is not None and (target.version is not None or now - cached[1] < FOREIGN_TEMPLATE_TTL):
            return cached[0]
        try:
            answer = await self.http.post_json(
                f"{target.address}/worker_get_conv_template", {"model": target.model}
            )
            conv = p.conversation_from_worker(answer["conv"])
        except Exception as exc:
            raise p.worker_unreachable(
                target.model, target.where, f"no conversation template ({exc})"
            ) from exc
        if len(self._templates) > 4096:
            self._templates.clear()
        self._templates[key] = (conv, now)
        return conv


def _fields(value: Any) -> frozenset[str] | None:
    """A published field list (None when the worker publishes none: an older worker of ours)."""
    return frozenset(str(v) for v in value) if isinstance(value, list) else None


# --- serving -------------------------------------------------------------------------------------------
class Api:
    def __init__(self, settings: Settings, http: Http) -> None:
        self.settings = settings
        self.http = http
        self.directory = Directory(http, settings.controller_address, settings.refresh_interval)
        self.limits = p.Limits(max_n=settings.max_n)
        self._keys = [k.encode() for k in settings.api_keys]

    def check_key(self, request: Request) -> None:
        if not self._keys:
            return
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme.lower() != "bearer" or not key:
            raise p.ApiError(
                401,
                "Missing API key: send it as `Authorization: Bearer KEY`.",
                "invalid_request_error",
                None,
                "missing_api_key",
            )
        given = key.strip().encode()
        if not any(hmac.compare_digest(given, k) for k in self._keys):
            raise p.ApiError(
                401, "Incorrect API key provided.", "invalid_request_error", None, "invalid_api_key"
            )

    async def read_json(self, request: Request) -> Any:
        limit = self.settings.max_body_bytes
        length = request.headers.get("content-length", "")
        too_big = p.ApiError(
            413,
            f"The request body is larger than {limit} bytes.",
            "invalid_request_error",
            None,
            "request_too_large",
        )
        if length.isdigit() and int(length) > limit:
            raise too_big
        # A browser may POST text/plain to any site without asking (no CORS preflight): only JSON bodies
        # are read, as FastAPI does since 0.65.2, so no web page can chat through a user's browser.
        media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media and media != "application/json" and not media.endswith("+json"):
            raise p.ApiError(
                415,
                f"The request body must be sent as Content-Type: application/json, not {media[:80]!r}.",
                "invalid_request_error",
                None,
                "unsupported_media_type",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_big
            chunks.append(chunk)
        try:
            return orjson.loads(b"".join(chunks))
        except orjson.JSONDecodeError as exc:
            raise p.invalid("body", f"The request body is not valid JSON: {exc}", "invalid_json") from None

    # The worker's frames, one list per network read; the first list is awaited before answering, so
    # an error before any text becomes a real HTTP status (the OpenAI SDKs retry a 429).
    async def batches(self, target: Target, params: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        splitter = p.FrameSplitter()
        yielded = False
        for attempt in (0, 1):
            try:
                async for data in self.http.stream(f"{target.address}/worker_generate_stream", params):
                    frames = splitter.feed(data)
                    if frames:
                        yielded = True
                        yield frames
                break
            except WorkerUnreachable as exc:
                self.directory.invalidate(target.address)
                if attempt or yielded:
                    raise p.worker_unreachable(target.model, target.where, str(exc)) from None
                await self.directory.refresh()  # another worker may serve it (or this one, restarted)
                targets = self.directory.targets.get(target.model)
                if not targets:
                    raise p.worker_unreachable(target.model, target.where, str(exc)) from None
                target = targets[0]
            except WorkerSilent:
                raise p.worker_timeout(target.model, target.where, self.settings.worker_timeout) from None
            except WorkerRefused as exc:
                raise p.worker_error(exc.frame, target.model, target.where) from None
        rest = splitter.close()
        if rest:
            yield rest

    async def start(self, target: Target, params: dict[str, Any], n: int) -> list[_Stream]:
        streams = [_Stream(self.batches(target, params)) for _ in range(n)]
        try:
            await asyncio.gather(*(s.prime() for s in streams))
            for s in streams:
                s.raise_first_error(target)
        except BaseException:
            await asyncio.gather(*(s.close() for s in streams))
            raise
        return streams

    async def generate(self, request: Request, chat: bool) -> Response:
        self.check_key(request)
        body = await self.read_json(request)
        req: p.Sampling = p.parse_chat(body, self.limits) if chat else p.parse_completion(body, self.limits)
        target = await self.directory.resolve(req.model)
        p.check_mapped(req, target.request_fields, target.response_fields)
        template = await self.directory.template(target) if chat else None
        params = p.worker_params(req, template, target.context_length)
        # The sticky key for a model's variants (issue 17): X-Conversation-Id, else OpenAI's `user` field.
        sticky = request.headers.get("x-conversation-id") or (
            body.get("user") if isinstance(body, dict) else None
        )
        if isinstance(sticky, str) and sticky:
            params["conversation_id"] = sticky[:256]
        prefix = "chatcmpl" if chat else "cmpl"
        reply = p.Reply(f"{prefix}-{uuid.uuid4().hex}", int(time.time()), req.model, chat)
        streams = await self.start(target, params, req.n)
        if req.stream:
            return _ClosingStream(
                _sse(reply, req, target, streams),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return await _unless_gone(request, _full(reply, req, target, streams), streams)


async def _unless_gone(request: Request, answer: Awaitable[Response], streams: list[_Stream]) -> Response:
    """A whole (non-streamed) answer, given up when its client goes away: its worker streams, and so the
    endpoint calls, end at once instead of running to the last token for nobody (the streamed path ends
    them when a send fails)."""
    work = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({work, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
            await asyncio.gather(*(s.close() for s in streams))  # even if `answer` never started
    if work.cancelled():
        return Response(status_code=499)  # nobody is listening; the server logs it as such
    return work.result()


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (the body was read already: the next message is that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class _ClosingStream(StreamingResponse):
    """A StreamingResponse that closes its body however the response ends: cancelled while sending (the
    client went away), Starlette leaves the generator to the garbage collector, and with it the worker
    streams it holds."""

    body_iterator: AsyncIterator[bytes]  # (ours is an async generator: it has aclose)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                await closer()


class _Stream:
    """One worker stream with its first batch read ahead."""

    def __init__(self, batches: AsyncIterator[list[dict[str, Any]]]) -> None:
        self._batches = batches
        self.first: list[dict[str, Any]] = []

    async def prime(self) -> None:
        self.first = await anext(self._batches, [])

    def raise_first_error(self, target: Target) -> None:
        """An error before any text is the response's status; after text, an event in the stream."""
        for frame in self.first:
            if frame.get("error_code"):
                raise p.worker_error(frame, target.model, target.where)
            if frame.get("text"):
                return

    async def all(self) -> AsyncIterator[list[dict[str, Any]]]:
        if self.first:
            yield self.first
        async for batch in self._batches:
            yield batch

    @property
    def rest(self) -> AsyncIterator[list[dict[str, Any]]]:
        return self._batches

    async def close(self) -> None:
        closer = getattr(self._batches, "aclose", None)
        if closer is not None:
            await closer()


async def _merged(streams: list[_Stream]) -> AsyncGenerator[tuple[int, list[dict[str, Any]]], None]:
    """Batches of every stream as they come, tagged with the choice index (bounded: backpressure)."""
    if len(streams) == 1:  # the common case, without a generator layer per batch
        if streams[0].first:
            yield 0, streams[0].first
        async for batch in streams[0].rest:
            yield 0, batch
        return
    queue: asyncio.Queue[tuple[int, list[dict[str, Any]] | BaseException | None]] = asyncio.Queue(
        maxsize=2 * len(streams)
    )

    async def pump(i: int, s: _Stream) -> None:
        try:
            async for batch in s.all():
                await queue.put((i, batch))
            await queue.put((i, None))
        except Exception as exc:  # handed to the reader, which raises it (a cancel is not: see finally)
            await queue.put((i, exc))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        left = len(streams)
        while left:
            i, item = await queue.get()
            if item is None:
                left -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                yield i, item
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)  # before the streams are closed


def _apply(
    choice: p.Choice, batch: list[dict[str, Any]], req: p.Sampling, target: Target, chat: bool
) -> tuple[str, Any, p.ApiError | None]:
    """Advance a choice by one batch: (new text, new logprobs, the error a frame reported)."""
    text, items, offset = "", [], len(choice.text)
    error = None
    for frame in batch:
        if frame.get("error_code"):
            error = p.worker_error(frame, target.model, target.where)
            break
        text += choice.advance(frame)
        if req.logprobs:
            items += choice.new_logprobs(frame)
    logprobs = None
    if req.logprobs and items:
        logprobs = (
            p.chat_logprobs(items, req.top_logprobs)
            if chat
            else p.completion_logprobs(items, req.top_logprobs, offset)
        )
    return text, logprobs, error


async def _sse(
    reply: p.Reply, req: p.Sampling, target: Target, streams: list[_Stream]
) -> AsyncIterator[bytes]:
    choices = [p.Choice(i) for i in range(len(streams))]
    try:
        if reply.chat:
            for c in choices:
                yield reply.chunk(c.index, None, None, role=True)
        # Closed on the way out (an `async for` does not close what it iterates): with n > 1 its pump
        # tasks must end before the streams they read are closed.
        async with contextlib.aclosing(_merged(streams)) as batches:
            async for i, batch in batches:
                text, logprobs, error = _apply(choices[i], batch, req, target, reply.chat)
                if text or logprobs:
                    yield reply.chunk(i, text, None, logprobs)
                if error is not None:
                    raise error
        for c in choices:
            yield reply.chunk(c.index, None, c.finish_reason or "stop")
        if req.include_usage:
            yield reply.usage_chunk(p.sum_usage(choices))
        yield p.DONE
    except p.ApiError as exc:  # mid-stream: an error event, then the stream ends
        yield exc.event()
    finally:
        await asyncio.gather(*(s.close() for s in streams))


async def _full(reply: p.Reply, req: p.Sampling, target: Target, streams: list[_Stream]) -> Response:
    choices = [p.Choice(i) for i in range(len(streams))]
    logprobs: list[list[Any]] = [[] for _ in streams]
    try:
        async with contextlib.aclosing(_merged(streams)) as batches:  # as in _sse
            async for i, batch in batches:
                _, lp, error = _apply(choices[i], batch, req, target, reply.chat)
                if error is not None:
                    return _error_response(error)
                if lp is not None:
                    logprobs[i].append(lp)
    finally:
        await asyncio.gather(*(s.close() for s in streams))
    merged = [_join_logprobs(parts, reply.chat) if req.logprobs else None for parts in logprobs]
    return _json(reply.full(choices, merged))


def _join_logprobs(parts: list[dict[str, Any]], chat: bool) -> dict[str, Any]:
    if chat:
        return {"content": [entry for part in parts for entry in part["content"]]}
    keys = ("tokens", "token_logprobs", "top_logprobs", "text_offset")
    return {k: [v for part in parts for v in part[k]] for k in keys}


_V1_METHODS = {  # our /v1 routes and the method each takes (a wrong method is a 405 naming it)
    "/v1/chat/completions": "POST",
    "/v1/completions": "POST",
    "/v1/embeddings": "POST",
    "/v1/models": "GET",
}


def _not_allowed(method: str, path: str, allowed: str) -> Response:
    error = p.ApiError(405, f"Method {method} is not allowed on {path[:100]}: use {allowed}.")
    allow = "GET, HEAD" if allowed == "GET" else allowed
    return _json(error.body(), 405, {"Allow": allow})


def _json(doc: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        orjson.dumps(doc), status_code=status, headers=dict(headers or {}), media_type="application/json"
    )


def _error_response(exc: p.ApiError) -> Response:
    return _json(exc.body(), exc.status, exc.headers())


Handler = Callable[[Request], Awaitable[Response]]


def _guarded(handler: Handler) -> Handler:
    """Every failure answers with OpenAI's envelope: an ApiError as itself, anything else as a 500 that
    names no internals (the details go to the log)."""

    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except p.ApiError as exc:
            return _error_response(exc)
        except Exception as exc:
            log.exception("api_error", path=request.url.path, error=type(exc).__name__)
            return _error_response(
                p.ApiError(
                    500, "The server failed to handle the request.", "server_error", None, "internal_error"
                )
            )

    return run


def create_app(settings: Settings, http_factory: Callable[[], Http] | None = None) -> Router:
    """The API app. The HTTP client is created on the serving loop at start-up (aiohttp's pool belongs to
    its loop), with the background refresh of the live set."""
    holder: dict[str, Api] = {}

    def api() -> Api:
        return holder["api"]

    @asynccontextmanager
    async def lifespan(_: Any) -> AsyncIterator[None]:
        http: Any = http_factory() if http_factory else AiohttpClient(settings.worker_timeout)
        holder["api"] = Api(settings, http)
        refresher = asyncio.ensure_future(holder["api"].directory.run())
        try:
            yield
        finally:
            refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await refresher
            closer = getattr(http, "close", None)
            if closer is not None:
                await closer()

    async def chat(request: Request) -> Response:
        return await api().generate(request, chat=True)

    async def completions(request: Request) -> Response:
        return await api().generate(request, chat=False)

    async def models(request: Request) -> Response:
        api().check_key(request)
        return _json(p.model_list(api().directory.names, int(time.time())))

    async def model(request: Request) -> Response:
        api().check_key(request)
        name = request.path_params["model"]
        await api().directory.resolve(name)
        return _json(p.model_list([name], int(time.time()))["data"][0])

    async def embeddings(request: Request) -> Response:
        api().check_key(request)
        raise p.ApiError(
            404,
            "Embeddings are not supported by this server: it serves chat and completion models only.",
            "invalid_request_error",
            None,
            "not_supported",
        )

    async def other_v1(request: Request) -> Response:
        api().check_key(request)
        path = request.url.path.rstrip("/")
        allowed = _V1_METHODS.get(path) or ("GET" if path.startswith("/v1/models/") else None)
        methods = {"GET", "HEAD"} if allowed == "GET" else {allowed}
        if allowed is not None and request.method not in methods:  # the route, not this method: 405
            return _not_allowed(request.method, path, allowed)
        raise p.ApiError(
            404,
            f"Unknown API route: {request.method} {request.url.path[:100]}",
            "invalid_request_error",
            None,
            "unknown_url",
        )

    async def health(request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):  # the route exists: 405, not the catch-all's 404
            return _not_allowed(request.method, "/health", "GET")
        return _json({"ok": True})

    async def not_found(request: Request) -> Response:
        raise p.ApiError(404, "Not found.", "invalid_request_error", None, "unknown_url")

    routes = [
        Route("/v1/chat/completions", _guarded(chat), methods=["POST"]),
        Route("/v1/completions", _guarded(completions), methods=["POST"]),
        Route("/v1/models", _guarded(models), methods=["GET"]),
        Route("/v1/models/{model:path}", _guarded(model), methods=["GET"]),
        Route("/v1/embeddings", _guarded(embeddings), methods=["POST"]),
        Route("/health", health, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/v1/{rest:path}", _guarded(other_v1), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        Route("/{rest:path}", _guarded(not_found), methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
    ]
    # A bare Router, not a Starlette app: its error middlewares wrap every chunk's `send` in two more
    # layers, and `_guarded` already answers every failure with OpenAI's envelope.
    return Router(routes=routes, lifespan=lifespan)
