"""Issue 17 end to end on the local stack: a staged rollout to a candidate that fails every request (the
stand-in's fault control) is rolled back automatically from the counts the worker records, and users
never see its failures (each one fails over to the live endpoint before the first token)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.local_stack import LocalStack

MODEL, CANDIDATE = "demo-tgi", "demo-tgi-cand-e2e"


def variants(stack: LocalStack) -> dict[str, dict[str, Any]]:
    model = next((m for m in stack.model_set()["models"] if m["name"] == MODEL), {})
    return {v["endpoint_name"]: v for v in model.get("variants", [])}


def wait(predicate: Any, stack: LocalStack, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"{what}\n{stack.log_tail()}"
        time.sleep(0.5)


def test_a_failing_candidate_is_rolled_back_and_users_never_see_it(local_stack: LocalStack) -> None:
    standin = local_stack.standin_url
    httpx.post(f"{standin}/_standin/faults/{CANDIDATE}", json={"error_rate": 1.0}).raise_for_status()
    try:
        started = local_stack.cli(
            "models", "rollout", MODEL, "--endpoint", CANDIDATE, "--steps", "50,100", "--bake", "10m",
            "--min-requests", "10",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        wait(lambda: variants(local_stack).get(CANDIDATE, {}).get("weight") == 50, local_stack, "not served")

        answers = []
        with httpx.Client(timeout=60) as client:
            for i in range(40):
                body = {"model": MODEL, "messages": [{"role": "user", "content": f"q{i}"}], "max_tokens": 3}
                r = client.post(f"{local_stack.api_url}/chat/completions", json={**body, "user": f"user-{i}"})
                answers.append((r.status_code, r.json()))
        assert all(code == 200 for code, _ in answers), [a for a in answers if a[0] != 200][:3]
        assert all(doc["choices"][0]["message"]["content"] for _, doc in answers)
        faults = httpx.get(f"{standin}/_standin/faults").json()
        assert faults[CANDIDATE]["injected"] >= 1  # it was chosen, and failed

        def rolled_back() -> bool:
            out = local_stack.cli("rollout", "status", MODEL, "--json")
            return out.returncode == 0 and json.loads(out.stdout)["rollout"].get("status") == "rolled_back"

        wait(rolled_back, local_stack, "no rollback")
        wait(lambda: variants(local_stack).get(CANDIDATE, {}).get("weight") == 0, local_stack, "weight kept")
    finally:
        httpx.delete(f"{standin}/_standin/faults/{CANDIDATE}")
