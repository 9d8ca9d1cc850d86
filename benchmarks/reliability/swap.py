"""Swap under load: concurrent streams through the OpenAI API while the registry changes.

Writes cycle through a config change (a new description), an endpoint move, removing or re-adding a
model nobody streams from, and an invalid item written straight into the table (the sync must reject it
and the last good spec must keep answering). A watcher polls the worker's /model-set every 50 ms to
timestamp what it serves; each stream must be answered, whole, by an endpoint its model was served by
between the moment it started and its first token.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

import httpx

from benchmarks.reliability.chat import StreamResult, client_for, stream_chat
from benchmarks.reliability.report import Check, Results
from benchmarks.reliability.stack import HarnessStack
from sagemaker_fastchat.registry_ops import put_model, remove_model

Snapshot = dict[str, Any]
# (display name, example config, demo format): the stand-in serves any `demo-<format>-<suffix>` endpoint
TARGETS = (
    ("swap-a", "tgi", "tgi"),
    ("swap-b", "openai-sse", "openai"),
    ("swap-c", "lmi-jsonlines", "lmi"),
    ("swap-d", "tgi", "tgi"),
)
CHURN = ("swap-churn", "lmi-jsonlines", "lmi")


@dataclass
class SwapSettings:
    streams: int = 64
    writes: int = 50
    write_interval: float = 1.0
    tokens: int = 30  # reply length of each stream ([[tokens:N]])
    propagation_timeout: float = 30.0


@dataclass
class Write:
    index: int
    kind: str
    model: str
    at: float
    visible: Callable[[Snapshot], bool]
    seen_after: float | None = None

    def started_after(self, t: float) -> str:
        return f"{t - self.at:.2f} s after write #{self.index} ({self.kind} {self.model})"


@dataclass
class Timeline:
    """What the worker served over time, with the watcher's uncertainty: a loaded worker answers polls
    late, so a snapshot's state began after the poll before it was sent (its point's time) and held until
    at most the moment the next snapshot was received (`received`, also what propagation is measured
    to). Without `received`, points are exact times."""

    points: list[tuple[float, Snapshot]] = field(default_factory=list)
    received: list[float] = field(default_factory=list)

    def seen_at(self, i: int) -> float:
        return self.received[i] if i < len(self.received) else self.points[i][0]

    def endpoints(self, model: str, start: float, end: float, slack: float = 0.2) -> set[str]:
        """Every endpoint `model` may have been served by at some moment of [start, end]."""
        found: set[str] = set()
        for i, (began, snap) in enumerate(self.points):
            until = self.seen_at(i + 1) if i + 1 < len(self.points) else float("inf")
            if began <= end + slack and until >= start - slack:
                entry = served(snap, model)
                if entry is not None:
                    found.add(entry["endpoint_name"])
        return found


def example(name: str) -> dict[str, Any]:
    text = resources.files("sagemaker_fastchat.examples").joinpath(f"{name}.json").read_text()
    return dict(json.loads(text))


def item(name: str, config: str, endpoint: str, description: str) -> dict[str, Any]:
    base = example(config)
    base.update(model_name=name, endpoint_name=endpoint, description=description)
    return base


def served(snap: Snapshot, model: str) -> dict[str, Any] | None:
    return next((m for m in snap.get("models", []) if m["name"] == model), None)


async def watch(stack: HarnessStack, timeline: Timeline, stop: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=5) as http:
        last, previous_poll = None, time.monotonic()
        while not stop.is_set():
            sent = time.monotonic()
            try:
                snap = (await http.get(stack.url("worker") + "/model-set")).json()
            except (httpx.HTTPError, ValueError):
                snap = None
            if snap is not None:
                key = json.dumps([snap.get("version"), snap.get("models"), snap.get("rejected")])
                if key != last:
                    timeline.points.append((previous_poll, snap))
                    timeline.received.append(time.monotonic())
                    last = key
                previous_poll = sent  # the next change happened after this poll was answered
            await asyncio.sleep(0.05)


def broken_item(name: str, endpoint: str) -> dict[str, Any]:
    """Written with boto3 straight into the table (no CLI validation): no response mapping."""
    config = {"request": {"defaults": {}, "mapping": {"prompt": "$.inputs"}}, "response": {"mapping": {}}}
    return {
        "model_name": {"S": name},
        "endpoint_name": {"S": endpoint},
        "endpoint_req_config": {"S": json.dumps(config)},
    }


def run_swap(stack: HarnessStack, results: Results, settings: SwapSettings) -> None:
    asyncio.run(_run_swap(stack, results, settings))


async def _run_swap(stack: HarnessStack, results: Results, settings: SwapSettings) -> None:
    registry = stack.registry()
    endpoint = {name: f"demo-{fmt}-{name}-e0" for name, _, fmt in (*TARGETS, CHURN)}
    description = dict.fromkeys(endpoint, "rev start")
    for name, config, _ in (*TARGETS, CHURN):
        put_model(registry, item(name, config, endpoint[name], description[name]), active=True)

    def all_served() -> bool:
        snap = stack.model_set()
        return all((e := served(snap, n)) and e["endpoint_name"] == endpoint[n] for n in endpoint)

    if await asyncio.to_thread(stack.wait_for, all_served, 60) is None:
        results.add(Check("swap", "setup", False, "register the swap models", "not served within 60 s"))
        return

    timeline, writes, streams = Timeline(), [], []
    stop_watch, stop_streams = asyncio.Event(), asyncio.Event()
    client = client_for(stack.api_url, timeout=60)
    prompt_tokens = settings.tokens

    async def streamer(k: int) -> None:
        j = 0
        while not stop_streams.is_set():
            name = TARGETS[(k + j) % len(TARGETS)][0]
            streams.append(await stream_chat(client, name, f"[[tokens:{prompt_tokens}]] stream {k}-{j}"))
            j += 1

    def write(i: int) -> Write:
        kind = ("config", "move", "churn", "invalid")[i % 4]
        name, config, fmt = TARGETS[(i // 4) % len(TARGETS)]
        # Each write keeps what earlier writes set, so a later write never hides an earlier one's effect.
        if kind == "config":
            description[name] = desc = f"rev {i}"
            put_model(registry, item(name, config, endpoint[name], desc), active=True)
            return Write(
                i, kind, name, time.monotonic(), lambda s: (served(s, name) or {}).get("description") == desc
            )
        if kind == "move":
            endpoint[name] = new = f"demo-{fmt}-{name}-e{i}"
            put_model(registry, item(name, config, new, description[name]), active=True)
            return Write(
                i, kind, name, time.monotonic(), lambda s: (served(s, name) or {}).get("endpoint_name") == new
            )
        if kind == "churn":
            churn = CHURN[0]
            if served(stack.model_set(), churn) is not None:
                remove_model(registry, churn)
                return Write(i, "remove", churn, time.monotonic(), lambda s: served(s, churn) is None)
            put_model(registry, item(churn, CHURN[1], endpoint[churn], description[churn]), active=True)
            return Write(i, "re-add", churn, time.monotonic(), lambda s: served(s, churn) is not None)
        registry.store.put(broken_item(name, endpoint[name]))
        return Write(i, kind, name, time.monotonic(), lambda s: name in (s.get("rejected") or {}))

    watcher = asyncio.create_task(watch(stack, timeline, stop_watch))
    tasks = [asyncio.create_task(streamer(k)) for k in range(settings.streams)]
    started = time.monotonic()
    for i in range(settings.writes):
        await asyncio.sleep(settings.write_interval)
        writes.append(await asyncio.to_thread(write, i))
    await asyncio.sleep(min(settings.write_interval * 3, 3.0))  # streams keep running past the last write
    stop_streams.set()
    await asyncio.gather(*tasks)
    deadline = time.monotonic() + settings.propagation_timeout
    while time.monotonic() < deadline and not all(_seen(w, timeline) for w in writes):
        await asyncio.sleep(0.2)
    stop_watch.set()
    await watcher
    await client.close()
    _evaluate(stack, results, settings, timeline, writes, streams, time.monotonic() - started)


def _seen(w: Write, timeline: Timeline) -> bool:
    for i, (_, snap) in enumerate(timeline.points):
        t = timeline.seen_at(i)
        if t >= w.at and w.visible(snap):
            w.seen_after = t - w.at
            return True
    return False


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _evaluate(  # noqa: PLR0917 (one call site; the run's pieces)
    stack: HarnessStack,
    results: Results,
    settings: SwapSettings,
    timeline: Timeline,
    writes: list[Write],
    streams: list[StreamResult],
    elapsed: float,
) -> None:
    failed = [s for s in streams if s.error is not None]
    truncated = [
        s for s in streams if s.error is None and (s.words != settings.tokens - 1 or s.finish_reason is None)
    ]
    wrong = []
    for s in streams:
        if s.error is None and s.endpoint is not None:
            allowed = timeline.endpoints(s.model, s.started, s.first_token or s.ended)
            if s.endpoint not in allowed:
                wrong.append((s, allowed))
    for w in writes:
        _seen(w, timeline)
    delays = [w.seen_after for w in writes if w.seen_after is not None]
    unseen = [w for w in writes if w.seen_after is None]
    kinds: dict[str, int] = {}
    for w in writes:
        kinds[w.kind] = kinds.get(w.kind, 0) + 1
    prop = "none observed"
    if delays:
        p50, p95 = statistics.median(delays), _percentile(delays, 0.95)
        prop = f"p50 {p50:.2f} s, p95 {p95:.2f} s, max {max(delays):.2f} s"
    by_kind = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
    results.metrics.update(
        {
            "swap: streams (concurrent)": f"{len(streams)} ({settings.streams})",
            "swap: registry writes": f"{len(writes)} ({by_kind})",
            "swap: duration": f"{elapsed:.0f} s",
            "swap: failed / truncated / wrong-endpoint": f"{len(failed)} / {len(truncated)} / {len(wrong)}",
            "swap: propagation (write -> worker serves it)": prop,
            "swap: model-set versions seen": len({s.get("version") for _, s in timeline.points}),
        }
    )

    def when(s: StreamResult) -> str:
        """Where a stream started relative to the latest write before it (to tell causes apart)."""
        last = max((w for w in writes if w.at <= s.started), key=lambda w: w.at, default=None)
        return f" ({last.started_after(s.started)})" if last else " (before the first write)"

    examples = [f"{s.model}: {s.error}{when(s)}" for s in failed[:3]] + [
        f"truncated: {s.text[-60:]!r} ({s.finish_reason})" for s in truncated[:2]
    ]
    examples += [f"{s.model} answered by {s.endpoint}, allowed {sorted(a)}{when(s)}" for s, a in wrong[:3]]
    if failed:
        by_model: dict[str, int] = {}
        for s in failed:
            by_model[s.model] = by_model.get(s.model, 0) + 1
        examples.append(f"failed by model: {by_model}")
    results.add(
        Check(
            "swap",
            "streams",
            bool(streams) and not failed and not truncated and not wrong,
            f"{settings.streams} concurrent streams, {len(writes)} registry writes",
            f"{len(streams)} streams: {len(failed)} failed, {len(truncated)} truncated, "
            f"{len(wrong)} wrong-endpoint"
            + (f"; e.g. {'; '.join(str(e) for e in examples)}" if examples else ""),
            {
                "failed": len(failed),
                "truncated": len(truncated),
                "wrong_endpoint": len(wrong),
                "streams": len(streams),
            },
        )
    )
    results.add(
        Check(
            "swap",
            "propagation",
            not unseen,
            "each write is served by the worker",
            f"{len(delays)}/{len(writes)} writes served: {prop}"
            + (
                f"; never seen: {', '.join(f'#{w.index} {w.kind} {w.model}' for w in unseen[:5])}"
                if unseen
                else ""
            ),
            {"delays": delays},
        )
    )
    results.add(
        Check(
            "swap",
            "worker-ready",
            stack.ready_status() == 200 and stack.queue_length() == 0,
            "after the run",
            f"/ready {stack.ready_status()}, busy slots {stack.queue_length()}",
        )
    )
