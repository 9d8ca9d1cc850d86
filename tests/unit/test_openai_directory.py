"""The API's cache of the live set (runtime.openai_api.Directory) over an in-memory HTTP fake: one
controller call per refresh, worker addresses learnt once, a refresh on a miss, templates cached per
spec version."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest
from fastchat.conversation import get_conv_template

from runtime import openai_protocol as p
from runtime.openai_api import Directory

CONTROLLER = "http://controller"
OURS, THEIRS = "http://ours", "http://theirs"


class FakeHttp:
    """The controller, one of our workers and one plain FastChat worker, in memory; counts calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.models = {OURS: ["alpha", "beta"], THEIRS: ["vicuna"]}
        self.templates = {"alpha": None, "beta": "llama-2"}
        self.down: set[str] = set()

    def _check(self, url: str) -> None:
        self.calls.append(url)
        if any(url.startswith(d) for d in self.down):
            raise ConnectionError(url)

    async def get_json(self, url: str) -> Any:
        self._check(url)
        if url == f"{OURS}/model-set":
            return {
                "models": [
                    {"name": n, "endpoint_name": f"ep-{n}", "conv_template": self.templates[n], "hash": "h1"}
                    for n in self.models[OURS]
                ]
            }
        return None  # any other worker: no /model-set

    async def post_json(self, url: str, body: Mapping[str, Any]) -> Any:
        self._check(url)
        if url == f"{CONTROLLER}/list_models":
            return {"models": sorted(n for a, ns in self.models.items() if a not in self.down for n in ns)}
        if url == f"{CONTROLLER}/get_worker_address":
            return {"address": next((a for a, ns in self.models.items() if body["model"] in ns), "")}
        if url == f"{THEIRS}/worker_get_status":
            return {"model_names": self.models[THEIRS]}
        if url == f"{THEIRS}/model_details":
            return {"context_length": 2048}
        if url.endswith("/worker_get_conv_template"):
            conv = get_conv_template("vicuna_v1.1")
            data = dataclasses.asdict(conv)
            data["sep_style"] = int(conv.sep_style)
            return {"conv": data}
        raise AssertionError(url)

    def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:
        raise AssertionError("not used")


def test_refresh_learns_workers_once_then_asks_only_them() -> None:
    """First refresh: list + one address lookup per worker; later refreshes: list + one call per worker."""

    async def run() -> tuple[FakeHttp, Directory]:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        assert d.names == ["alpha", "beta", "vicuna"]
        assert sum("get_worker_address" in c for c in http.calls) == 2  # one per worker, not per model
        http.calls.clear()
        await d.refresh()
        assert sorted(http.calls) == sorted(
            [
                f"{CONTROLLER}/list_models",
                f"{OURS}/model-set",
                f"{THEIRS}/model-set",
                f"{THEIRS}/worker_get_status",
            ]
        )
        return http, d

    _, d = asyncio.run(run())
    target = asyncio.run(d.resolve("alpha"))
    assert (target.address, target.endpoint, target.context_length) == (OURS, "ep-alpha", 4096)
    assert target.where == "endpoint ep-alpha"
    theirs = asyncio.run(d.resolve("vicuna"))
    assert (theirs.address, theirs.context_length, theirs.where) == (THEIRS, 2048, f"worker {THEIRS}")


def test_unknown_model_refreshes_then_404() -> None:
    """A name not in the cache triggers one refresh; still unknown: 404 model_not_found."""

    async def run() -> None:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        http.models[OURS].append("gamma")
        http.templates["gamma"] = None
        d._last = 0.0  # as if the last refresh were long ago
        assert (await d.resolve("gamma")).model == "gamma"
        d._last = 0.0
        with pytest.raises(p.ApiError) as caught:
            await d.resolve("nope")
        assert caught.value.code == "model_not_found"

    asyncio.run(run())


def test_invalidated_and_unreachable_workers_are_dropped() -> None:
    """A worker that refused a connection is forgotten at once; one that cannot be described is dropped
    at the next refresh (the controller's list then decides)."""

    async def run() -> None:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        d.invalidate(THEIRS)
        assert d.targets["vicuna"] == []
        http.down.add(OURS)
        await d.refresh()
        assert "alpha" not in d.names
        assert d.names == ["vicuna"]  # learnt again through the controller

    asyncio.run(run())


def test_a_miss_after_an_invalidation_refreshes_instead_of_404() -> None:
    """One broken connection invalidates a worker that is still up: requests right after it (within the
    miss gap, and concurrently) refresh and find their model again, none gets a 404."""

    async def run() -> list[str]:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        d.invalidate(OURS)
        found = await asyncio.gather(*(d.resolve(m) for m in ("alpha", "beta", "alpha", "beta")))
        return [t.address for t in found]

    assert asyncio.run(run()) == [OURS] * 4


def test_a_model_that_appears_right_after_a_refresh_is_found() -> None:
    """A refresh that ran just before a model appeared (within the miss gap: the controller restarted and
    the worker registered again a moment later) does not answer the next request for it with a 404."""

    async def run() -> str:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        http.down.add(OURS)
        await d.refresh()  # the background refresh: alpha is not served yet
        http.down.clear()  # the worker is back, well inside the 0.2 s miss gap
        return (await d.resolve("alpha")).address

    assert asyncio.run(run()) == OURS


def test_a_flood_of_unknown_names_refreshes_at_most_every_gap() -> None:
    """Concurrent misses share one refresh; the controller is not asked once per request."""

    async def run() -> int:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        before = http.calls.count(f"{CONTROLLER}/list_models")
        results = await asyncio.gather(*(d.resolve(f"nope-{i}") for i in range(50)), return_exceptions=True)
        assert all(isinstance(r, p.ApiError) and r.code == "model_not_found" for r in results)
        return http.calls.count(f"{CONTROLLER}/list_models") - before

    assert asyncio.run(run()) == 1


def test_templates_by_name_or_from_the_worker_cached() -> None:
    """A published conv_template is used by name; otherwise the worker's answer, fetched once per spec."""

    async def run() -> None:
        http = FakeHttp()
        d = Directory(http, CONTROLLER)
        await d.refresh()
        assert (await d.template(await d.resolve("beta"))).name == "llama-2"
        alpha = await d.resolve("alpha")
        assert (await d.template(alpha)).name == "vicuna_v1.1"
        await d.template(alpha)
        assert sum(c.endswith("/worker_get_conv_template") for c in http.calls) == 1

    asyncio.run(run())
