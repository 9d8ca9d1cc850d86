"""The stand-in's HTTP side: SageMaker runtime routes served with Starlette.

Endpoints: demo endpoints are any name `demo-<format>` or `demo-<format>-<suffix>` (format: tgi, openai,
lmi), so operators can add demo models freely; `--forward NAME=URL` relays an endpoint to a local model
server (TGI `/generate_stream` or an OpenAI-compatible `/v1/chat/completions`), streaming its bytes as
PayloadParts. Any other name gets the error AWS returns for an endpoint that does not exist.

The `sagemaker` control plane's DescribeEndpoint is answered too (POST / with
`X-Amz-Target: SageMaker.DescribeEndpoint`, botocore's JSON protocol; AWS_ENDPOINT_URL_SAGEMAKER points
here): demo and forwarded endpoints are InService, any other name gets AWS's ValidationException
"Could not find endpoint". Endpoint states on demand, by a word in a demo endpoint's suffix:
`demo-<format>-creating[-...]` reports Creating and `demo-<format>-failed[-...]` Failed (invocations of
both are refused, as an endpoint that is not InService would be); `demo-<format>-broken[-...]` is InService
but every invocation streams a ModelStreamError before its first token (a probe fails).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from sagemaker_fastchat.standin import demo
from sagemaker_fastchat.standin.eventstream import corrupt, payload_part, stream_error
from sagemaker_fastchat.standin.faults import Fault, parse_fault

EVENTSTREAM = "application/vnd.amazon.eventstream"
_DEMO_NAME = re.compile(r"^demo-(tgi|openai|lmi)(-[A-Za-z0-9-]+)?$")
ACCOUNT = "123456789012"


@dataclass
class StandinConfig:
    token_rate: float = 0.0  # tokens per second per stream; 0 = as fast as possible
    part_size: int = 0  # 0: one PayloadPart per line; N: re-cut the byte stream into N-byte parts
    forwards: dict[str, str] = field(default_factory=dict)
    requests_served: int = 0
    streams_open: int = 0
    streams_abandoned: int = 0  # streams whose client hung up before the end (GET /ping shows both)
    describes: int = 0  # DescribeEndpoint calls answered (GET /ping)
    # The last requests' bodies, for debugging and tests (GET /_standin/requests). In memory only.
    recent: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=100))
    faults: dict[str, Fault] = field(default_factory=dict)  # endpoint -> fault on demand (faults.py)


def _aws_error(status: int, code: str, message: str) -> Response:
    return JSONResponse(
        {"message": message},
        status_code=status,
        headers={
            "x-amzn-ErrorType": f"{code}:http://internal.amazon.com/coral/com.amazon.sagemaker/",
            "x-amzn-RequestId": str(uuid.uuid4()),
        },
    )


def _not_found(name: str) -> Response:
    return _aws_error(400, "ValidationError", f"Endpoint {name} of account {ACCOUNT} not found.")


def demo_status(name: str) -> str:
    """A demo endpoint's EndpointStatus, chosen by a word of its name's suffix (InService by default)."""
    words = set(name.split("-")[2:])
    return "Creating" if "creating" in words else "Failed" if "failed" in words else "InService"


def _unavailable(name: str) -> Response | None:
    """The error for invoking an endpoint that does not exist or a demo endpoint that is not InService."""
    if not _DEMO_NAME.match(name):
        return _not_found(name)
    if demo_status(name) != "InService":
        return _aws_error(400, "ValidationError", f"Endpoint {name} is {demo_status(name)}, not InService.")
    return None


def _json_error(code: str, message: str) -> Response:
    """An error as the JSON protocol (the `sagemaker` control plane) sends it."""
    return JSONResponse(
        {"__type": code, "message": message},
        status_code=400,
        headers={"x-amzn-RequestId": str(uuid.uuid4())},
        media_type="application/x-amz-json-1.1",
    )


def _recut(lines: list[bytes], part_size: int) -> list[bytes]:
    if part_size <= 0:
        return lines
    data = b"".join(lines)
    return [data[i : i + part_size] for i in range(0, len(data), part_size)]


async def _counted(cfg: StandinConfig, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Counts open streams, and streams the client hung up on before the end."""
    cfg.streams_open += 1
    complete = False
    try:
        async for frame in frames:
            yield frame
        complete = True
    finally:
        cfg.streams_open -= 1
        cfg.streams_abandoned += not complete


def control_plane(cfg: StandinConfig) -> Callable[[Request], Awaitable[Response]]:
    """The `sagemaker` control plane's route (POST /, botocore's JSON protocol)."""

    async def describe_endpoint(request: Request) -> Response:
        """The `sagemaker` control plane's DescribeEndpoint (the only operation the stand-in knows)."""
        target = request.headers.get("x-amz-target", "")
        if target != "SageMaker.DescribeEndpoint":
            return _json_error("UnknownOperationException", f"the stand-in does not implement {target!r}")
        try:
            name = str((await request.json())["EndpointName"])
        except (ValueError, KeyError, TypeError):
            return _json_error("ValidationException", "EndpointName is required")
        cfg.describes += 1
        arn = f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:endpoint/{name.lower()}"
        if name not in cfg.forwards and not _DEMO_NAME.match(name):
            return _json_error("ValidationException", f'Could not find endpoint "{arn}".')
        status = "InService" if name in cfg.forwards else demo_status(name)
        if (fault := cfg.faults.get(name)) is not None and fault.status:
            status = fault.status
        answer: dict[str, Any] = {
            "EndpointName": name,
            "EndpointArn": arn,
            "EndpointConfigName": f"{name}-config",
            "EndpointStatus": status,
            "CreationTime": 1767225600.0,
            "LastModifiedTime": 1767225600.0,
        }
        if status == "Failed":
            answer["FailureReason"] = "demo endpoint failed on demand (its name holds 'failed')"
        return JSONResponse(answer, media_type="application/x-amz-json-1.1")

    return describe_endpoint


def fault_routes(cfg: StandinConfig) -> list[Route]:
    """The control routes that set, clear and list faults (faults.py)."""

    async def set_fault(request: Request) -> Response:
        name = request.path_params["name"]
        if request.method == "DELETE":
            cfg.faults.pop(name, None)
            return JSONResponse({"endpoint": name, "fault": None})
        try:
            doc = await request.json()
        except ValueError:
            doc = None
        fault = parse_fault(doc)
        if isinstance(fault, str):
            return JSONResponse({"error": fault}, status_code=400)
        cfg.faults[name] = fault
        return JSONResponse({"endpoint": name, "fault": fault.describe()})

    async def list_faults(_: Request) -> Response:
        return JSONResponse({name: f.describe() for name, f in cfg.faults.items()})

    return [
        Route("/_standin/faults", list_faults, methods=["GET"]),
        Route("/_standin/faults/{name}", set_fault, methods=["POST", "DELETE"]),
    ]


def create_app(config: StandinConfig | None = None) -> Any:
    cfg = config or StandinConfig()

    async def demo_frames(fmt: str, name: str, body: dict[str, object]) -> AsyncIterator[bytes]:
        p = demo.plan(fmt, name, body)
        rate = p.rate if p.rate is not None else cfg.token_rate
        if p.ttft:
            await asyncio.sleep(p.ttft)
        lines = demo.render_lines(fmt, name, p)
        for i, part in enumerate(_recut(lines, cfg.part_size)):
            if p.fail_after is not None and i >= p.fail_after:
                yield stream_error(p.fail_kind, f"Demo {p.fail_kind} after {i} parts", "ModelError")
                return
            frame = payload_part(part)
            if p.corrupt_after is not None and i >= p.corrupt_after:
                yield corrupt(frame)
                return
            yield frame
            if rate > 0:
                await asyncio.sleep(1.0 / rate)
            elif i % 16 == 15:
                await asyncio.sleep(0)  # let other streams run when streaming flat out

    async def forward_frames(url: str, body: bytes) -> AsyncIterator[bytes]:
        async with httpx.AsyncClient(timeout=httpx.Timeout(300, connect=5)) as client:
            try:
                async with client.stream(
                    "POST", url, content=body, headers={"Content-Type": "application/json"}
                ) as resp:
                    if resp.status_code >= 400:
                        text = (await resp.aread()).decode(errors="replace")[:500]
                        yield stream_error(
                            "ModelStreamError",
                            f"Received client error ({resp.status_code}) from model: {text}",
                            "ModelError",
                        )
                        return
                    async for chunk in resp.aiter_raw():
                        yield payload_part(chunk)
            except httpx.HTTPError as exc:
                yield stream_error("InternalStreamFailure", f"forwarding to {url} failed: {exc}")

    async def invoke_stream(request: Request) -> Response:
        name = request.path_params["name"]
        raw = await request.body()
        cfg.requests_served += 1
        cfg.recent.append({"endpoint": name, "body": raw.decode(errors="replace")})
        if (injected := _fault_response(name, fault := cfg.faults.get(name))) is not None:
            return injected
        if name in cfg.forwards:
            return StreamingResponse(
                _faulty(fault, forward_frames(cfg.forwards[name], raw)),
                media_type=EVENTSTREAM,
                headers={"X-Amzn-Invoked-Production-Variant": "AllTraffic"},
            )
        if (refusal := _unavailable(name)) is not None:
            return refusal
        if b"[[throttle]]" in raw:
            return _aws_error(429, "ThrottlingException", "Rate exceeded (demo [[throttle]] hook)")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            return _aws_error(424, "ModelError", "Received client error (422) from primary: body is not JSON")
        return StreamingResponse(
            _counted(
                cfg, _faulty(fault, demo_frames(name.split("-")[1], name, body))
            ),  # demo-<format>[-suffix]
            media_type=EVENTSTREAM,
            headers={"X-Amzn-Invoked-Production-Variant": "AllTraffic"},
        )

    async def invoke(request: Request) -> Response:
        name = request.path_params["name"]
        match = _DEMO_NAME.match(name)
        cfg.requests_served += 1
        if not match:
            return _not_found(name)
        body = json.loads(await request.body())
        fmt = match.group(1)
        return JSONResponse(demo.full_response(fmt, name, demo.plan(fmt, name, body)))

    async def health(_: Request) -> Response:
        return JSONResponse(
            {
                "ok": True,
                "requests_served": cfg.requests_served,
                "streams_open": cfg.streams_open,
                "streams_abandoned": cfg.streams_abandoned,
                "describes": cfg.describes,
            }
        )

    async def recent(request: Request) -> Response:
        endpoint = request.query_params.get("endpoint")
        return JSONResponse([r for r in cfg.recent if endpoint in (None, r["endpoint"])])

    app = Starlette(
        routes=[
            Route("/endpoints/{name}/invocations-response-stream", invoke_stream, methods=["POST"]),
            Route("/endpoints/{name}/invocations", invoke, methods=["POST"]),
            Route("/ping", health, methods=["GET"]),
            Route("/", control_plane(cfg), methods=["POST"]),
            Route("/_standin/requests", recent, methods=["GET"]),
            *fault_routes(cfg),
        ]
    )
    return _Refusing(app, cfg)


class _Refused:
    """What the ASGI app returns to have uvicorn close the connection without any answer (a refused or
    dropped connection, as the client sees it; uvicorn logs it, which _QuietFaults filters)."""

    def __repr__(self) -> str:
        return "stand-in fault: connection refused"


class _InjectedDrop(Exception):
    """Raised inside a response body: uvicorn closes the connection mid-response."""


class _QuietFaults(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _InjectedDrop):
            return False
        return not any(isinstance(arg, _Refused) for arg in (record.args or ()))


logging.getLogger("uvicorn.error").addFilter(_QuietFaults())


class _Refusing:
    """ASGI wrapper: an invocation of an endpoint whose fault says `refuse` gets no answer at all."""

    def __init__(self, app: Starlette, cfg: StandinConfig) -> None:
        self.app, self.cfg = app, cfg

    async def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        if scope["type"] == "http" and self.cfg.faults:
            parts = str(scope.get("path", "")).split("/")
            fault = self.cfg.faults.get(parts[2]) if len(parts) > 3 and parts[1] == "endpoints" else None
            if fault is not None and fault.refuse:
                fault.invocations += 1
                fault.injected += 1
                return _Refused()
        await self.app(scope, receive, send)
        return None


def _fault_response(name: str, fault: Fault | None) -> Response | None:
    """The error a fault injects before the stream starts, or None (the stream runs, maybe slowed or cut)."""
    if fault is None:
        return None
    if fault.status not in (None, "InService"):
        return _aws_error(400, "ValidationError", f"Endpoint {name} is {fault.status}, not InService.")
    if not fault.take_error():
        return None
    if fault.error == "throttle":
        return _aws_error(429, "ThrottlingException", "Rate exceeded (stand-in fault)")
    if fault.error == "model":
        return _aws_error(424, "ModelError", "Received server error (500) from primary (stand-in fault)")
    if fault.error == "stream":

        async def failing() -> AsyncIterator[bytes]:
            yield stream_error("ModelStreamError", "stand-in fault before the first token", "ModelError")

        return StreamingResponse(failing(), media_type=EVENTSTREAM)
    return _aws_error(503, "ServiceUnavailable", "The endpoint is not available (stand-in fault)")


async def _faulty(fault: Fault | None, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The frames, delayed before the first one and cut off after `drop_after` as the fault says."""
    if fault is not None and fault.first_token_delay:
        await asyncio.sleep(fault.first_token_delay)
    sent = 0
    async for frame in frames:
        if fault is not None and fault.drop_after is not None and sent >= fault.drop_after:
            raise _InjectedDrop(f"stand-in fault: connection dropped after {sent} parts")
        yield frame
        sent += 1
    if fault is not None and fault.drop_after is not None and sent >= fault.drop_after:
        raise _InjectedDrop(f"stand-in fault: connection dropped after {sent} parts")


def parse_forward(values: list[str]) -> dict[str, str]:
    forwards: dict[str, str] = {}
    for value in values:
        name, sep, url = value.partition("=")
        if not sep or not name or not url.startswith(("http://", "https://")):
            raise argparse.ArgumentTypeError(
                f"--forward expects ENDPOINT=http://host:port/path, got {value!r}"
            )
        forwards[name] = url
    return forwards


def register(sub: Any) -> None:
    parser = sub.add_parser("standin", help="run the SageMaker runtime stand-in (demo endpoints, forwarding)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--token-rate", type=float, default=0.0, help="tokens/s per stream (0: unlimited)")
    parser.add_argument("--part-size", type=int, default=0, help="re-cut payload bytes into N-byte parts")
    parser.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="ENDPOINT=URL",
        help="relay ENDPOINT to a local model server (TGI or OpenAI-compatible URL)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    config = StandinConfig(args.token_rate, args.part_size, parse_forward(args.forward))
    # AWS keeps idle connections open far longer than uvicorn's 5 s default. With 5 s, a client's pooled
    # connection could be closed just as it was reused, costing a retry with backoff (up to ~1 s).
    uvicorn.run(
        create_app(config), host=args.host, port=args.port, log_level="warning", timeout_keep_alive=75
    )
    return 0
