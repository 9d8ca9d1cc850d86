"""One FastChat model worker serving the whole live model set (FastChat's worker HTTP protocol).

Routes: worker_generate_stream, worker_generate, worker_get_status, count_token, model_details,
worker_get_conv_template (each routed per request by `model`, FastChat's multi-model pattern), plus
`/model-set` (live version, models, last error, rejections), `/health` and `/ready`.

Failure domains: a request's parameters are checked before it takes a concurrency slot; the slot is given
back on every path out of its stream (end, error, client gone, cancelled); an exception inside a stream
becomes an error frame; a body that is not a JSON object is a 400. `/ready` turns 503 when every slot has
been held with nothing moving for longer than `unready_after` (a worker that cannot serve gets replaced).

Registration and heartbeats are FastChat's own (BaseModelWorker); the worker re-registers with its new
model names after every swap, and FastChat's heartbeat re-registers when a restarted controller has
forgotten it. The controller overwrites a worker's entry in one step, so its model list never goes
empty during a swap.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastchat.constants import ErrorCode
from fastchat.serve.base_model_worker import BaseModelWorker
from starlette.types import Receive, Scope, Send

from contract.chunk import INTERNAL, INVALID_REQUEST, NOT_FOUND, WorkerChunk, encode_frame, error_chunk
from contract.tokens import approx_token_count
from runtime import fastchat_compat
from runtime.adapter import SageMakerAdapter
from runtime.model_set import LiveModelSet
from runtime.params import MAX_MODEL_NAME_CHARS, check_params
from runtime.tracing import WORKER_SERVICE, GenerationTrace, traced_stream
from telemetry.tracing import TRACE_HEADER, Tracer

log = structlog.get_logger("worker")

DEFAULT_CONCURRENCY = 512  # FastChat's default is 5: far too few for a worker that only waits on I/O
DEFAULT_CONTEXT_LENGTH = 4096
DEFAULT_UNREADY_AFTER = 30.0
MAX_BODY_BYTES = 16 * 1024 * 1024  # a prompt at its bound (runtime/params.py), JSON-escaped


@dataclass(frozen=True)
class WorkerSettings:
    worker_address: str = "http://127.0.0.1:21002"
    controller_address: str = "http://127.0.0.1:21001"
    limit_concurrency: int = DEFAULT_CONCURRENCY
    heartbeat_interval: float = 15.0
    register: bool = True
    unready_after: float = DEFAULT_UNREADY_AFTER


class Slots:
    """The worker's concurrency slots: FastChat's semaphore (its status reads the queue length from it)
    plus when there was last progress (a slot free or given back, a frame sent), so `/ready` can tell a
    busy worker (streams move, slots turn over) from a stuck one (all held, nothing moving)."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.semaphore = asyncio.Semaphore(limit)
        self._clock = clock
        self._moved_at = clock()

    async def acquire(self) -> Callable[[], None]:
        """Wait for a slot; returns its release, which gives the slot back once however often called."""
        self._note()
        await self.semaphore.acquire()
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.semaphore.release()
                self._moved_at = self._clock()

        return release

    def progressed(self) -> None:
        """A stream sent a frame (one clock read per frame)."""
        self._moved_at = self._clock()

    def stuck_for(self) -> float:
        """Seconds without progress while no slot is free; 0 when one is."""
        self._note()
        return self._clock() - self._moved_at if self.semaphore.locked() else 0.0

    def _note(self) -> None:
        if not self.semaphore.locked():
            self._moved_at = self._clock()


class SetWorker(BaseModelWorker):  # type: ignore[misc]
    """FastChat's BaseModelWorker (registration, heartbeats, status) over a swappable model set."""

    def __init__(self, settings: WorkerSettings, live: LiveModelSet, tracer: Tracer | None = None) -> None:
        self.live = live
        self.tracer = tracer if tracer is not None else Tracer(WORKER_SERVICE)
        fastchat_compat.apply_for_worker(
            lambda name: a.spec.conv_template if (a := live.current.get(name)) is not None else None
        )
        super().__init__(
            controller_addr=settings.controller_address,
            worker_addr=settings.worker_address,
            worker_id=str(uuid.uuid4())[:8],
            model_path="sagemaker-fastchat",
            model_names=[],
            limit_worker_concurrency=settings.limit_concurrency,
        )
        self.settings = settings
        self.context_len = DEFAULT_CONTEXT_LENGTH
        self.slots: Slots | None = None  # made on the serving loop (lifespan)
        self.registered = False
        self.registered_version: int | None = None
        self._register_lock = threading.Lock()

    # BaseModelWorker reads `model_names` for its status and registration: always the live set's names.
    @property
    def model_names(self) -> list[str]:
        return self.live.current.names

    @model_names.setter
    def model_names(self, _: list[str]) -> None:
        pass

    def make_conv_template(self, conv_template: str | None = None, model_path: str | None = None) -> Any:
        # Templates are per model (conv_template_for). The base's version would import torch here.
        return fastchat_compat.neutral_conversation()

    def register(self) -> bool:
        """(Re-)register the live names with the controller; False when it cannot be reached."""
        if not self.settings.register:
            return False
        with self._register_lock:
            version = self.live.current.version
            try:
                self.register_to_controller()
            except Exception as exc:
                self.registered = False
                log.warning("controller_register_failed", error=str(exc), controller=self.controller_addr)
                return False
            self.registered, self.registered_version = True, version
            return True

    def heartbeat_forever(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.heartbeat_interval):
            try:
                self.send_heart_beat()  # FastChat's: re-registers when the controller forgot us
                self.registered = True
            except Exception as exc:
                log.warning("heartbeat_failed", error=str(exc))

    def adapter(self, model: str) -> SageMakerAdapter | None:
        return self.live.current.get(model)

    def trace(self, adapter: SageMakerAdapter, header: str | None) -> GenerationTrace:
        spec = adapter.spec
        return GenerationTrace(self.tracer, header, spec.name, spec.endpoint_name, self.live.current.version)

    def conv_template_for(self, model: str) -> dict[str, Any]:
        conv = fastchat_compat.conversation_template(model)
        data = dataclasses.asdict(conv)
        data["sep_style"] = int(conv.sep_style)
        return data

    def missing_model(self, model: str) -> WorkerChunk:
        current = self.live.current
        names = ", ".join(current.names) or "empty"
        message = f"not in the live model set (version {current.version}: {names})"
        return error_chunk(model, message, ErrorCode.INVALID_MODEL, NOT_FOUND)


def _invalid(model: str, param: str, why: str, code: int = ErrorCode.VALIDATION_TYPE_ERROR) -> WorkerChunk:
    return error_chunk(model, f"{param}: {why}", code, INVALID_REQUEST, param=param)


async def _guarded(
    adapter: SageMakerAdapter, params: dict[str, Any], trace: GenerationTrace
) -> AsyncIterator[WorkerChunk]:
    """The adapter's chunks (the variants it tries go to the trace); an exception inside them ends the
    stream with an error chunk, never a dropped connection (its details go to the log only: they may
    hold server paths)."""
    try:
        async for chunk in adapter.generate_stream(params, trace.attempts):
            yield chunk
    except Exception as exc:
        spec = adapter.spec
        log.exception("stream_failed", model=spec.name, endpoint=spec.endpoint_name)
        message = (
            f"the worker failed while streaming from endpoint {spec.endpoint_name} ({type(exc).__name__})"
        )
        yield error_chunk(spec.name, message, ErrorCode.INTERNAL_ERROR, INTERNAL, endpoint=spec.endpoint_name)


async def _frames(chunks: AsyncIterator[WorkerChunk], slots: Slots) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        slots.progressed()
        yield encode_frame(chunk)


class SlotStreamingResponse(StreamingResponse):
    """A StreamingResponse that gives its concurrency slot back however the response ends. Starlette runs
    a `background` task only after a complete response, not when the body raises or the client goes."""

    def __init__(self, content: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(content)
        self._content = content
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
            aclose = getattr(self._content, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()  # hang up on the endpoint now, not when the generator is collected
                except Exception:
                    log.exception("stream_close_failed")


async def _json_object(request: Request) -> dict[str, Any] | JSONResponse:
    """The request's JSON object, or a 400/413 error response (FastChat frame fields) saying why."""
    size = 0
    parts: list[bytes] = []
    async for part in request.stream():
        size += len(part)
        if size > MAX_BODY_BYTES:
            why = f"at most {MAX_BODY_BYTES} bytes"
            return JSONResponse(_invalid("", "body", why, ErrorCode.PARAM_OUT_OF_RANGE), status_code=413)
        parts.append(part)
    try:
        params = orjson.loads(b"".join(parts))
    except orjson.JSONDecodeError as exc:
        return JSONResponse(_invalid("", "body", f"is not valid JSON ({exc})"), status_code=400)
    if not isinstance(params, dict):
        why = f"must be a JSON object, not {type(params).__name__}"
        return JSONResponse(_invalid("", "body", why), status_code=400)
    return params


def _add_generation_routes(app: FastAPI, worker: SetWorker) -> None:
    """worker_generate_stream and worker_generate: both admit a request (no slot taken for a refusal),
    then hold a slot until the generation ends, however it ends."""

    async def admit(request: Request) -> tuple[dict[str, Any], SageMakerAdapter] | Response:
        """The request's parameters and its model's adapter, or the response refusing it (no slot taken)."""
        params = await _json_object(request)
        if isinstance(params, Response):
            return params
        model = params.get("model")
        if not isinstance(model, str):
            return JSONResponse(_invalid("", "model", "must be a string"), status_code=400)
        adapter = worker.adapter(model)
        if adapter is None:
            return JSONResponse(worker.missing_model(model[:MAX_MODEL_NAME_CHARS]), status_code=404)
        if (invalid := check_params(params)) is not None:
            return JSONResponse(_invalid(model, invalid.param, invalid.why, invalid.code), status_code=400)
        return params, adapter

    async def generate_stream(request: Request) -> Response:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            # FastChat's stream readers split on NUL: the refusal is one frame
            return Response(bytes(admitted.body) + b"\0", status_code=admitted.status_code)
        params, adapter = admitted  # the adapter is held for the whole stream, whatever swaps
        trace = worker.trace(adapter, request.headers.get(TRACE_HEADER))
        assert worker.slots is not None
        release = await worker.slots.acquire()
        try:
            worker.call_ct += 1
            # Each frame holds the whole text so far (FastChat's protocol); when this reader lags, whatever
            # the endpoint sent meanwhile is decoded in one pass into one frame.
            frames = _frames(traced_stream(_guarded(adapter, params, trace), trace), worker.slots)
            return SlotStreamingResponse(frames, release)
        except BaseException:
            release()
            raise

    # The hot route, added as a plain Starlette route: FastAPI's dependency and response-model machinery
    # has nothing to do for it but costs time on every request.
    app.add_route("/worker_generate_stream", generate_stream, methods=["POST"])

    @app.post("/worker_generate")
    async def generate(request: Request) -> Any:
        admitted = await admit(request)
        if isinstance(admitted, Response):
            return admitted
        params, adapter = admitted
        assert worker.slots is not None
        release = await worker.slots.acquire()
        try:
            worker.call_ct += 1
            trace = worker.trace(adapter, request.headers.get(TRACE_HEADER))
            last: WorkerChunk | dict[str, Any] = {}
            async for last in traced_stream(_guarded(adapter, params, trace), trace):  # noqa: B007
                pass  # the final chunk is the answer
            return JSONResponse(last)
        finally:
            release()


def create_worker_app(
    worker: SetWorker,
    background: list[Any] | None = None,
    resources: list[AbstractAsyncContextManager[Any]] | None = None,
    endpoint_check: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    """The worker's HTTP app. `background` holds callables(stop_event) run in threads for its lifetime;
    `resources` are entered at start-up and left at shutdown, on the serving loop (the SageMaker client);
    `endpoint_check` reports the warm-up's state in `/model-set` (runtime.warmup)."""
    stop = threading.Event()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker.slots = Slots(worker.settings.limit_concurrency)
        worker.semaphore = worker.slots.semaphore
        async with AsyncExitStack() as stack:
            for resource in resources or []:
                await stack.enter_async_context(resource)
            threads = [threading.Thread(target=fn, args=(stop,), daemon=True) for fn in (background or [])]
            for thread in threads:
                thread.start()
            yield
            stop.set()
            # A moment for their last act (the outcome recorder's final flush) before the process exits.
            deadline = time.monotonic() + 5.0
            for thread in threads:
                await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))

    app = FastAPI(lifespan=lifespan)

    _add_generation_routes(app, worker)

    @app.post("/worker_get_status")
    async def get_status(_: Request) -> Any:
        return worker.get_status()

    @app.post("/count_token")
    async def count_token(request: Request) -> Any:
        params = await _json_object(request)
        if isinstance(params, Response):
            return params
        return {"count": approx_token_count(str(params.get("prompt", ""))), "error_code": 0}

    @app.post("/worker_get_conv_template")
    async def get_conv_template(request: Request) -> Any:
        params = await _json_object(request)
        if isinstance(params, Response):
            return params
        return {"conv": await asyncio.to_thread(worker.conv_template_for, str(params.get("model")))}

    @app.post("/model_details")
    async def model_details(request: Request) -> Any:
        params = await _json_object(request)
        if isinstance(params, Response):
            return params
        adapter = worker.adapter(str(params.get("model")))
        length = (
            adapter.spec.context_length if adapter and adapter.spec.context_length else worker.context_len
        )
        return {"context_length": length}

    @app.get("/model-set")
    async def model_set(_: Request) -> Any:
        live = worker.live
        return {
            **live.current.describe(),
            "last_error": live.last_error,
            "last_error_at": live.last_error_at,
            "registered": worker.registered,
            "registered_version": worker.registered_version,
            "endpoint_check": endpoint_check() if endpoint_check is not None else {"enabled": False},
        }

    @app.get("/health")
    async def health(_: Request) -> Any:
        return {"ok": True}

    @app.get("/ready")
    async def ready(_: Request) -> Any:
        stuck = worker.slots.stuck_for() if worker.slots is not None else 0.0
        serving = stuck <= worker.settings.unready_after
        ok = worker.live.loaded and (worker.registered or not worker.settings.register) and serving
        body = {
            "ready": ok,
            "loaded": worker.live.loaded,
            "registered": worker.registered,
            "slots_stuck_seconds": round(stuck, 1),
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app
