"""A staged rollout on the local stack (issue 17): a candidate failing every request, made so by the
stand-in's fault control, is rolled back automatically by the step runner within one bake window once
min-requests is reached, while users' chats keep working (failover before the first token).

Needs both halves of the issue: the worker side (variant choice, outcome recording, stand-in faults) and
the control plane (rollout CLI, step runner)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx

from tests.local_stack import LocalStack

TGI = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples" / "tgi.json"
MODEL, LIVE, CAND = "rollme", "demo-tgi-rollme", "demo-tgi-rollme-canary"
BAKE = 600


def status(stack: LocalStack) -> dict[str, Any]:
    result = stack.cli("rollout", "status", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def served_variants(stack: LocalStack) -> list[str]:
    model = next((m for m in stack.model_set().get("models", []) if m.get("name") == MODEL), None)
    return [v.get("endpoint_name") for v in (model or {}).get("variants") or []]


def wait_for(check: Any, what: str, stack: LocalStack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}\n{stack.log_tail()}"
        time.sleep(0.5)


def test_a_failing_candidate_is_rolled_back_and_users_keep_chatting(local_stack: LocalStack) -> None:
    stack = local_stack
    faults = f"{stack.standin_url}/_standin/faults/{CAND}"
    assert stack.cli("models", "put", MODEL, "--endpoint", LIVE, "--config", str(TGI)).returncode == 0
    try:
        wait_for(
            lambda: MODEL in [m.get("name") for m in stack.model_set().get("models", [])], "the model", stack
        )
        httpx.post(faults, json={"error_rate": 1.0}).raise_for_status()
        started = stack.cli(
            "models", "rollout", MODEL, "--endpoint", CAND, "--steps", "50,100", "--bake", f"{BAKE}s",
            "--min-requests", "5",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        wait_for(lambda: CAND in served_variants(stack), "the candidate on the worker", stack)

        chats = failed = 0
        deadline = time.monotonic() + 150
        doc = status(stack)
        assert doc["published_weight"] == 50.0, doc  # the runner's view of the step: read from moto's SSM
        while doc["rollout"]["status"] == "running":
            assert time.monotonic() < deadline, f"not rolled back: {doc}\n{stack.log_tail()}"
            for _ in range(10):
                reply = httpx.post(
                    f"{stack.api_url}/chat/completions",
                    json={
                        "model": MODEL,
                        "messages": [{"role": "user", "content": f"hi {chats}"}],
                        "max_tokens": 3,
                    },
                    headers={"X-Conversation-Id": f"rollout-e2e-{chats}"},
                    timeout=30,
                )
                chats += 1
                failed += reply.status_code != 200
            doc = status(stack)

        state = doc["rollout"]
        assert state["status"] == "rolled_back", doc
        assert state["reason"].startswith("error rate 100% over ")
        assert state["history"][-1]["at"] - state["step_started_at"] < BAKE  # within one bake window
        assert failed <= chats * 0.5, (failed, chats)  # at most the candidate's share (failover: none)
        listed = json.loads(stack.cli("models", "list", "--json").stdout)["models"]
        row = next(r for r in listed if r["model"] == MODEL)
        assert {w["endpoint"]: w["weight"] for w in row["weights"]} == {LIVE: 100.0, CAND: 0.0}
        assert row["rollout"].startswith(f"rolled back: {CAND} at 0%: error rate 100% over ")
    finally:
        httpx.delete(faults)
        stack.cli("models", "remove", MODEL)
