"""Warm before traffic on the local stack, as an operator sees it: a candidate whose endpoint is not
InService, or whose probe fails, never takes a request, and `models list` says why."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.local_stack import LocalStack

TGI = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples" / "tgi.json"


def rows_when(stack: LocalStack, name: str, status: str, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        listed = json.loads(stack.cli("models", "list", "--json").stdout)["models"]
        row = next((r for r in listed if r["model"] == name), None)
        if row is not None and row["status"] == status:
            return dict(row)
        assert time.monotonic() < deadline, f"{name}: {row}\n{stack.log_tail()}"
        time.sleep(0.3)


def requests_to(stack: LocalStack, endpoint: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{stack.standin_url}/_standin/requests", params={"endpoint": endpoint}).json())


def test_endpoint_still_creating_is_rejected_by_the_sync(local_stack: LocalStack) -> None:
    """`models put` of a model whose endpoint is Creating: rejected with the reason, never served."""
    put = local_stack.cli(
        "models", "put", "creating", "--endpoint", "demo-tgi-creating-e2e", "--config", str(TGI)
    )
    assert put.returncode == 0, put.stderr
    row = rows_when(local_stack, "creating", "rejected")
    assert row["reason"] == "creating: endpoint demo-tgi-creating-e2e is Creating, not InService"
    assert "creating" not in [m["name"] for m in local_stack.model_set()["models"]]
    assert requests_to(local_stack, "demo-tgi-creating-e2e") == []


def test_failing_probe_is_refused_by_the_worker(local_stack: LocalStack) -> None:
    """`models put --probe` of a model whose endpoint fails before its first token: published (the endpoint
    is InService), refused by the worker after one probe request, and `models list` shows the worker's
    reason; chats never reach it."""
    put = local_stack.cli(
        "models", "put", "probed", "--endpoint", "demo-tgi-broken-e2e", "--config", str(TGI), "--probe"
    )
    assert put.returncode == 0, put.stderr
    row = rows_when(local_stack, "probed", "refused")
    assert row["reason"].startswith("worker: the probe failed:")
    assert "probed" in local_stack.model_set()["rejected"]
    reply = httpx.post(
        local_stack.api_url + "/chat/completions",
        json={"model": "probed", "messages": [{"role": "user", "content": "hi"}]},
        timeout=30,
    )
    assert reply.status_code >= 400
    probes = requests_to(local_stack, "demo-tgi-broken-e2e")
    assert len(probes) == 1
    assert json.loads(probes[0]["body"])["parameters"]["max_new_tokens"] == 1
