"""The OpenAI-compatible API against the worker behind it and direct boto3, side by side in one run
(issue 15 item 4), against the SageMaker stand-in (no token-rate limit unless paced).

(1) sequential TTFT: direct boto3, the worker (FastChat's protocol, address cached as the API does), the
    API (a streamed chat); added TTFT p50 of each over direct;
(2) 200 streams x 200 tokens and 64 x 1000, flat out: tokens/s of each side, as a share of direct;
(3) 200 users x 25 tokens/s (paced by the stand-in), each chatting back to back: tokens/s against the
    ideal 5,000 and TTFT p50/p95. While one side carries the load, 10 probe users on each of the other
    paths (the stand-in read directly over HTTP, the worker, the API) measure TTFT under the same machine
    load: the API's TTFT minus the worker probes' is what the API itself adds, and the direct probes
    show what the machine (2 cores shared by the stand-in, the worker, the API and this load generator)
    adds to every path. The load generator's own event-loop lag is printed too;
plus the CPU per 1,000 tokens of every process (stand-in, worker, API, this client) over (2) and (3).
Both the API and worker sides are read by the same cheap client: aiohttp on uvloop, raw reads, no
parsing but of the last event.
Targets through the API: added TTFT p50 <= 3 ms; >= 90% of direct at 200 x 200; paced >= 97% of ideal
with TTFT p95 <= 50 ms. The machine may be shared: read the numbers as noisy.
Run: .venv/bin/python benchmarks/bench_api.py   (about a minute; BENCH_ROUNDS=N for more rounds,
API_PROCESSES=N for `--workers N`, BENCH_PACED_ONLY=1 for (3) alone)
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
os.environ["AWS_DEFAULT_REGION"] = "us-east-1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import boto3
import psutil  # type: ignore[import-untyped]  # (no stubs; a benchmark-only use)
import uvloop

from benchmarks.bench_runtime import direct_stream, pct, standin_stack
from runtime.transport import sagemaker_client_config

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
PACED_SECONDS = float(os.environ.get("BENCH_PACED_SECONDS", "8"))
PROBES = 10  # probe users per other path during a paced run
Stream = Callable[[aiohttp.ClientSession, str], Awaitable[tuple[float, int]]]


def on_uvloop(main: Awaitable[Any]) -> Any:
    """The load generator's loop: uvloop, as the API and worker run (a cheap client for both sides)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)  # type: ignore[arg-type]


def _keep_tail(tail: bytearray, raw: bytes) -> None:
    """The stream's last bytes (where its last event is) without copying the whole stream per read."""
    tail += raw
    if len(tail) > 131072:
        del tail[:-65536]


def direct_side(standin: str) -> Stream:
    """The stand-in's endpoint over plain HTTP (no SigV4, no event-stream parsing): what the machine
    itself adds to a first byte. Tokens are counted from the TGI lines."""

    async def one(session: aiohttp.ClientSession, prompt: str) -> tuple[float, int]:
        body = {"inputs": prompt, "parameters": {"max_new_tokens": 1000}, "stream": True}
        start, first, n = time.perf_counter(), 0.0, 0
        url = f"{standin}/endpoints/demo-tgi/invocations-response-stream"
        async with session.post(url, json=body) as r:
            async for raw in r.content.iter_any():
                first = first or time.perf_counter() - start
                n += raw.count(b"data:")
        return first, n

    return one


def worker_side(worker: str) -> Stream:
    async def one(session: aiohttp.ClientSession, prompt: str) -> tuple[float, int]:
        params = {"model": "alpha", "prompt": prompt, "temperature": 0.7, "max_new_tokens": 1000}
        start, first, tail = time.perf_counter(), 0.0, bytearray()
        async with session.post(f"{worker}/worker_generate_stream", json=params) as r:
            async for raw in r.content.iter_any():
                first = first or time.perf_counter() - start
                _keep_tail(tail, raw)
        last = json.loads(bytes(tail).rstrip(b"\0").rsplit(b"\0", 1)[-1])
        return first, int(last["usage"]["completion_tokens"])

    return one


def api_side(api: str) -> Stream:
    async def one(session: aiohttp.ClientSession, prompt: str) -> tuple[float, int]:
        body = {
            "model": "alpha",
            "messages": [{"role": "user", "content": prompt}],
            "stream": True,
            "max_tokens": 1000,
            "stream_options": {"include_usage": True},
        }
        start, first, tail = time.perf_counter(), 0.0, bytearray()
        async with session.post(f"{api}/chat/completions", json=body) as r:
            async for raw in r.content.iter_any():
                if not first and b'"content"' in raw:
                    first = time.perf_counter() - start
                _keep_tail(tail, raw)
        usage = next((e for e in reversed(bytes(tail).split(b"\n\n")) if b'"usage"' in e), None)
        if usage is None:
            raise RuntimeError(f"API stream without usage (HTTP {r.status}): {bytes(tail[-300:])!r}")
        return first, int(json.loads(usage[len(b"data: ") :])["usage"]["completion_tokens"])

    return one


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(120))


async def _concurrent(side: Stream, prompt: str, streams: int) -> tuple[int, float]:
    async with session() as s:
        start = time.perf_counter()
        results = await asyncio.gather(*(side(s, prompt) for _ in range(streams)))
        return sum(t for _, t in results), time.perf_counter() - start


def _direct(client: object, prompt: str, streams: int) -> tuple[int, float]:
    with ThreadPoolExecutor(streams) as pool:
        start = time.perf_counter()
        tokens = sum(pool.map(lambda _: direct_stream(client, prompt)[1], range(streams)))
        return tokens, time.perf_counter() - start


def flat_out(client: object, sides: dict[str, Stream], prompt: str, streams: int) -> dict[str, float]:
    """Tokens/s per side: one warm-up round each, then ROUNDS alternating rounds."""
    runs: dict[str, Callable[[], tuple[int, float]]] = {"direct": lambda: _direct(client, prompt, streams)}
    for name, side in sides.items():
        runs[name] = lambda side=side: on_uvloop(_concurrent(side, prompt, streams))  # type: ignore[misc]
    for run in runs.values():
        run()
    totals = {name: [0.0, 0.0] for name in runs}
    for _ in range(ROUNDS):
        for name, run in runs.items():
            tokens, seconds = run()
            totals[name][0] += tokens
            totals[name][1] += seconds
    return {name: t / s for name, (t, s) in totals.items()}


async def _lag(lags: list[float], end: float) -> None:
    """The load generator's event-loop lag: how late a 1 ms sleep wakes up."""
    while time.perf_counter() < end:
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        lags.append(time.perf_counter() - start - 0.001)


async def _paced(
    sides: dict[str, Stream], load: str, users: int, seconds: float
) -> tuple[float, dict[str, list[float]], int, list[float]]:
    """`users` on the `load` side chat back to back for `seconds`, with PROBES users on every other side;
    tokens/s = users x the mean per-stream rate of the load side (tokens over the time from request to
    last byte, TTFT included), so 100% means every user got 25 tokens/s."""
    ttfts: dict[str, list[float]] = {name: [] for name in sides}
    rates: list[float] = []
    lags: list[float] = []
    tokens = 0
    async with session() as s:
        end = time.perf_counter() + seconds

        async def user(name: str, i: int, delay: float) -> None:
            nonlocal tokens
            await asyncio.sleep(delay)
            while time.perf_counter() < end:
                start = time.perf_counter()
                first, n = await sides[name](s, f"[[tokens:100]] [[rate:25]] {name} user {i}")
                ttfts[name].append(first)
                if name == load:
                    rates.append(n / (time.perf_counter() - start))
                    tokens += n

        # users arrive spread over one 4 s reply
        tasks = [user(load, i, i * 4.0 / users) for i in range(users)]
        for name in sides:
            if name != load:
                tasks += [user(name, i, 0.1 + i * 4.0 / PROBES) for i in range(PROBES)]
        await asyncio.gather(*tasks, _lag(lags, end))
        return users * statistics.mean(rates), ttfts, tokens, lags


class Cpu:
    """CPU seconds used by a process tree (a uvicorn with several workers has children); this process
    alone (its children are the stack) for the load generator."""

    def __init__(self, pid: int, tree: bool = True) -> None:
        self.proc = psutil.Process(pid)
        self.tree = tree

    def seconds(self) -> float:
        procs = [self.proc, *(self.proc.children(recursive=True) if self.tree else [])]
        return sum(sum(p.cpu_times()[:2]) for p in procs)


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine so far (other jobs on a shared machine included)."""
    t = psutil.cpu_times()
    total = sum(t)
    return total - t.idle - getattr(t, "iowait", 0.0), total


def _per_1000(used: dict[str, float], tokens: int) -> str:
    return ", ".join(f"{name} {seconds / tokens * 1e6:.0f} ms" for name, seconds in used.items())


def main() -> None:
    stack = standin_stack()
    try:
        stack.start_api(
            *(["--workers", os.environ["API_PROCESSES"]] if os.environ.get("API_PROCESSES") else [])
        )
        stack.wait_version(1)
        stack.wait_for(lambda: "alpha" in stack.controller_models())
        cpu = {n: Cpu(stack.sup.children[n].process.pid) for n in ("worker", "api")}
        everyone = {n: Cpu(stack.sup.children[n].process.pid) for n in ("standin", "worker", "api")}
        everyone["client"] = Cpu(os.getpid(), tree=False)
        sides = {"worker": worker_side(stack.worker_url), "api": api_side(stack.api_url)}
        client = boto3.client(
            "sagemaker-runtime", endpoint_url=stack.standin_url, config=sagemaker_client_config(208)
        )

        # (1) sequential TTFT, interleaved
        ttft: dict[str, list[float]] = {"direct": [], "worker": [], "api": []}

        async def sequential() -> None:
            async with session() as s:
                for i in range(50):
                    prompt = f"[[tokens:5]] ttft {i}"
                    ttft["direct"].append(direct_stream(client, prompt)[0])
                    for name, side in sides.items():
                        ttft[name].append((await side(s, prompt))[0])

        if not os.environ.get("BENCH_PACED_ONLY"):
            on_uvloop(sequential())
            p50 = {n: statistics.median(v[10:]) * 1e3 for n, v in ttft.items()}
            print(
                f"(1) TTFT p50: direct {p50['direct']:.2f} ms; "
                f"worker +{p50['worker'] - p50['direct']:.2f} ms; "
                f"API +{p50['api'] - p50['direct']:.2f} ms (target: API <= +3 ms; API over worker "
                f"{p50['api'] - p50['worker']:+.2f} ms)"
            )

            # (2) flat out
            for streams, tokens in ((200, 200), (64, 1000)):
                before = {n: c.seconds() for n, c in cpu.items()}
                rates = flat_out(client, sides, f"[[tokens:{tokens}]]", streams)
                used = {n: c.seconds() - before[n] for n, c in cpu.items()}
                total_tokens = streams * tokens * (ROUNDS + 1)
                print(
                    f"(2) {streams} x {tokens} flat out: direct {rates['direct']:,.0f} tok/s; "
                    f"worker {rates['worker']:,.0f} ({rates['worker'] / rates['direct']:.0%}); "
                    f"API {rates['api']:,.0f} ({rates['api'] / rates['direct']:.0%}; "
                    f"{rates['api'] / rates['worker']:.0%} of the worker)"
                    + (" (target >= 90%)" if tokens == 200 else "")
                    + f"; CPU per 1000 tokens: worker {used['worker'] / (2 * total_tokens) * 1e6:.1f} ms, "
                    f"API {used['api'] / total_tokens * 1e3 * 1e3:.1f} ms"
                )

        # (3) paced, with probes through the other paths
        probes = {"direct": direct_side(stack.standin_url), **sides}
        for load in sides:
            before = {n: c.seconds() for n, c in everyone.items()}
            busy_before = machine_busy()
            start = time.perf_counter()
            rate, ttfts, tokens, lags = on_uvloop(_paced(probes, load, 200, PACED_SECONDS))
            wall = time.perf_counter() - start
            used = {n: c.seconds() - before[n] for n, c in everyone.items()}
            busy_after = machine_busy()
            busy = (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1])
            print(
                f"(3) 200 users x 25 tok/s via {load}: {rate:,.0f} tok/s = {rate / 5000:.0%} of ideal 5,000; "
                f"TTFT p50 {pct(ttfts[load], 50) * 1e3:.1f} ms, p95 {pct(ttfts[load], 95) * 1e3:.1f} ms "
                "(target via API: >= 97%, p95 <= 50 ms)"
            )
            print(
                "    probes under the same load, TTFT p50 / p95: "
                + "; ".join(
                    f"{n} {pct(v, 50) * 1e3:.1f} / {pct(v, 95) * 1e3:.1f} ms"
                    for n, v in ttfts.items()
                    if n != load and v
                )
                + f"; load generator's loop lag p95 {pct(lags, 95) * 1e3:.1f} ms"
            )
            print(
                f"    CPU per 1000 tokens: {_per_1000(used, tokens)}; "
                f"these processes {sum(used.values()) / wall:.2f} of the machine's {psutil.cpu_count()} "
                "cores; "
                f"the machine {busy:.0%} busy (other jobs included)"
            )
    finally:
        stack.close()


if __name__ == "__main__":
    main()
