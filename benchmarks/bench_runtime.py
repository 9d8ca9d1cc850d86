"""Runtime benchmarks, each measured side by side in one run (issue: runtime hot swap).

(a) propagation: manifest written -> worker serving the new set, p50/p95 at a 1 s poll interval;
(b) added time-to-first-token of controller + worker + adapter versus calling the stand-in with boto3;
(c) 200 concurrent streams through one worker: tokens/s versus 200 direct boto3 streams (after one
    warm-up round each, over five alternating rounds).
The stand-in streams without a token-rate limit, so the numbers measure our path, not a sleep.
(d) `--variants` (short, alone): the added TTFT of variant choice + breaker bookkeeping: a model with two
    variants against one with a single endpoint through the same worker, interleaved; and the choice's
    own cost per request, measured in-process.
Targets: p95 propagation <= poll interval + 1 s; added TTFT p50 <= 5 ms (with variants too); >= 90% of
direct throughput.
Run: ./dev bench (or python benchmarks/bench_runtime.py --variants)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import boto3
import httpx

from runtime.transport import sagemaker_client_config
from sagemaker_fastchat.supervisor import http_ready
from tests.helpers import free_port
from tests.runtime_stack import CLI, RuntimeStack, model

STREAMS = 200
TOKENS = 200


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def direct_stream(client: object, prompt: str) -> tuple[float, int]:
    """Time to first PayloadPart and number of parts (tokens), straight from boto3."""
    start = time.perf_counter()
    body = json.dumps({"inputs": prompt, "parameters": {"max_new_tokens": 1000}, "stream": True}).encode()
    response = client.invoke_endpoint_with_response_stream(EndpointName="demo-tgi", Body=body)  # type: ignore[attr-defined]
    first, parts = 0.0, 0
    for event in response["Body"]:
        if "PayloadPart" in event:
            parts += 1
            if parts == 1:
                first = time.perf_counter() - start
    return first, parts


def worker_stream(http: httpx.Client, controller: str, prompt: str, name: str = "alpha") -> tuple[float, int]:
    """Time to first chunk through the controller lookup and the worker, and tokens streamed (the last
    chunk's completion count: the worker may coalesce cumulative chunks when the reader lags)."""
    start = time.perf_counter()
    address = http.post(f"{controller}/get_worker_address", json={"model": name}).json()["address"]
    params = {"model": name, "prompt": prompt, "temperature": 0.7, "max_new_tokens": 1000}
    first, buffer = 0.0, b""
    with http.stream("POST", f"{address}/worker_generate_stream", json=params) as response:
        for raw in response.iter_bytes():
            if not first and b"\0" in raw:
                first = time.perf_counter() - start
            buffer = (buffer + raw)[-65536:]
    last = json.loads(buffer.rstrip(b"\0").rsplit(b"\0", 1)[-1])
    return first, int(last["usage"]["completion_tokens"])


async def _worker_streams(controller: str, prompt: str) -> int:
    """STREAMS concurrent streams through controller + worker, read with aiohttp on one event loop (a
    threaded Python HTTP client would be the bottleneck here, not the worker)."""
    import aiohttp

    params = {"model": "alpha", "prompt": prompt, "temperature": 0.7, "max_new_tokens": 1000}
    connector = aiohttp.TCPConnector(limit=STREAMS + 8)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> int:
            async with session.post(f"{controller}/get_worker_address", json={"model": "alpha"}) as r:
                address = (await r.json())["address"]
            tail = b""
            async with session.post(f"{address}/worker_generate_stream", json=params) as r:
                async for raw in r.content.iter_any():
                    tail = (tail + raw)[-65536:]  # holds the last frame: the whole text so far
            return int(json.loads(tail.rstrip(b"\0").rsplit(b"\0", 1)[-1])["usage"]["completion_tokens"])

        return sum(await asyncio.gather(*(one() for _ in range(STREAMS))))


def _direct_round(client: object, prompt: str) -> tuple[int, float]:
    with ThreadPoolExecutor(STREAMS) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(lambda _: direct_stream(client, prompt)[1], range(STREAMS)))
        return tokens, time.perf_counter() - start


def _worker_round(controller: str, prompt: str) -> tuple[int, float]:
    start = time.perf_counter()
    tokens = asyncio.run(_worker_streams(controller, prompt))
    return tokens, time.perf_counter() - start


def throughput(client: object, controller: str, prompt: str, rounds: int = 5) -> tuple[float, float]:
    """Tokens/s of STREAMS concurrent streams, direct (boto3 in threads) and through the worker: one
    unmeasured warm-up round each (connection pools filled on both sides), then `rounds` measured rounds,
    alternating so both see the same machine; tokens/s over all measured rounds."""
    _direct_round(client, prompt)
    _worker_round(controller, prompt)
    totals = {"direct": [0, 0.0], "worker": [0, 0.0]}
    for _ in range(rounds):
        for side, (tokens, seconds) in (
            ("direct", _direct_round(client, prompt)),
            ("worker", _worker_round(controller, prompt)),
        ):
            totals[side][0] += tokens
            totals[side][1] += seconds
    return totals["direct"][0] / totals["direct"][1], totals["worker"][0] / totals["worker"][1]


def standin_stack(models: list[dict[str, Any]] | None = None) -> RuntimeStack:
    """A runtime stack (stand-in in its own process, 1 s poll interval) serving model `alpha` (or
    `models`) through the controller and the worker."""
    standin_port = free_port()
    stack = RuntimeStack(f"http://127.0.0.1:{standin_port}", poll_interval=1.0)
    stack.sup.start(
        "standin",
        [*CLI, "standin", "--port", str(standin_port)],
        stack.env(),
        http_ready(f"http://127.0.0.1:{standin_port}/ping"),
    )
    try:
        stack.sup.wait_ready(["standin"])
        stack.publish(models or [model("alpha")])
        stack.start_controller()
        stack.start_worker()
    except BaseException:
        stack.close()
        raise
    return stack


def main() -> None:
    stack = standin_stack()
    try:
        stack.wait_version(1)
        stack.wait_for(lambda: "alpha" in stack.controller_models())

        # (a) propagation
        delays = []
        for i in range(12):
            result = stack.publish([model("alpha", endpoint_name=f"demo-tgi-{i}")])
            start = time.perf_counter()
            stack.wait_version(result.version or 0)
            delays.append(time.perf_counter() - start)
        print(
            f"(a) propagation at poll interval 1 s over {len(delays)} publishes: "
            f"p50 {pct(delays, 50):.2f} s, p95 {pct(delays, 95):.2f} s (target p95 <= 2.0 s)"
        )
        stack.publish([model("alpha")])
        stack.wait_version(stack.store.manifest_version() or 0)

        # (b) TTFT, interleaved so both see the same machine load
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=stack.standin_url, config=sagemaker_client_config(STREAMS + 8)
        )
        http = httpx.Client(timeout=60, limits=httpx.Limits(max_connections=STREAMS + 8))
        direct_ttft, worker_ttft = [], []
        for i in range(60):
            prompt = f"[[tokens:5]] ttft {i}"
            direct_ttft.append(direct_stream(client, prompt)[0])
            worker_ttft.append(worker_stream(http, stack.controller_url, prompt)[0])
        d50, w50 = statistics.median(direct_ttft[10:]), statistics.median(worker_ttft[10:])
        print(
            f"(b) TTFT p50: direct {d50 * 1e3:.2f} ms, via controller+worker {w50 * 1e3:.2f} ms, "
            f"added {(w50 - d50) * 1e3:.2f} ms (target <= 5 ms)"
        )

        # (c) 200 concurrent streams, flat out, then at a real endpoint pace (the endpoint is the bottleneck)
        for label, prompt in (
            (f"x {TOKENS} tokens, flat out", f"[[tokens:{TOKENS}]]"),
            ("x 1000 tokens, flat out (steady streaming, less per-request share)", "[[tokens:1000]]"),
            ("x 100 tokens at 25 tokens/s", "[[tokens:100]] [[rate:25]]"),
        ):
            direct_rate, worker_rate = throughput(client, stack.controller_url, prompt)
            print(
                f"(c) {STREAMS} concurrent streams {label}: direct {direct_rate:,.0f} tokens/s, "
                f"via worker {worker_rate:,.0f} tokens/s = {worker_rate / direct_rate:.0%} of direct"
            )
    finally:
        stack.close()


DUO_VARIANTS = [{"endpoint_name": "demo-tgi-b", "weight": 50}]


def choice_cost(rounds: int = 20_000) -> float:
    """Microseconds per request of what variants add in-process: ranking for the sticky key, the breaker's
    allow and record, the attempt record."""
    from contract.spec import parse_model_item
    from runtime.adapter import SageMakerAdapter
    from runtime.variants import Attempt

    adapter = SageMakerAdapter(parse_model_item(model("duo", variants=DUO_VARIANTS)), None)
    adapter.assistant_role = "ASSISTANT:"
    start = time.perf_counter()
    for i in range(rounds):
        params = {"prompt": f"USER: question {i} ASSISTANT:"}
        route = adapter.ranked(params)[0]
        route.breaker.allow()
        Attempt("duo", route.endpoint_name, time.monotonic())
        route.breaker.record(True)
    return (time.perf_counter() - start) / rounds * 1e6


def variants_main() -> None:
    print(f"(d) variant choice + breaker bookkeeping in-process: {choice_cost():.1f} us per request")
    stack = standin_stack([model("alpha"), model("duo", variants=DUO_VARIANTS)])
    try:
        stack.wait_version(1)
        stack.wait_for(lambda: {"alpha", "duo"} <= set(stack.controller_models()))
        http = httpx.Client(timeout=60)
        one, two = [], []
        for i in range(60):
            prompt = f"[[tokens:5]] USER: ttft {i} ASSISTANT:"
            one.append(worker_stream(http, stack.controller_url, prompt, "alpha")[0])
            two.append(worker_stream(http, stack.controller_url, prompt, "duo")[0])
        o50, t50 = statistics.median(one[10:]), statistics.median(two[10:])
        print(
            f"(d) TTFT p50 via controller+worker: one endpoint {o50 * 1e3:.2f} ms, two variants "
            f"{t50 * 1e3:.2f} ms (ratio {t50 / o50:.2f}, added {(t50 - o50) * 1e3:+.2f} ms; budget <= 5 ms)"
        )
    finally:
        stack.close()


if __name__ == "__main__":
    variants_main() if "--variants" in sys.argv else main()
