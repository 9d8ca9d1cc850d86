"""The local stack keeps its state across restarts: a model added with the hint `up` prints is still
there after Ctrl-C and `up` again, with its model-set version numbers and the SSM history behind
`models rollback`; `up --fresh` starts from the demo models."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from sagemaker_fastchat import local_state
from tests.e2e.test_readme import run_script
from tests.local_stack import LocalStack

DEMOS = ["demo-tgi", "demo-openai", "demo-lmi"]


def hint(stack: LocalStack) -> list[str]:
    """The shell lines `up` prints for adding a model from another terminal."""
    deadline = time.monotonic() + 10
    while not any(line.startswith("Press Ctrl-C") for line in stack.lines):  # the banner's last line
        assert time.monotonic() < deadline, stack.log_tail()
        time.sleep(0.05)
    start = next(i for i, line in enumerate(stack.lines) if "add a model from another terminal" in line)
    end = next(i for i, line in enumerate(stack.lines) if line.startswith("Press Ctrl-C"))
    return [line.strip() for line in stack.lines[start + 1 : end]]


def listing(stack: LocalStack) -> dict[str, Any]:
    result = stack.cli("models", "list", "--json")
    assert result.returncode == 0, result.stderr + stack.log_tail()
    return dict(json.loads(result.stdout))


def run_started(stack: LocalStack) -> LocalStack:
    stack.start()
    return stack


def test_state_survives_a_restart_and_fresh_starts_from_the_demos(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = run_started(LocalStack(state, ["--no-web"]))
    try:
        # The hint, pasted as is into a shell with no AWS settings, from another folder.
        lines = hint(first)
        assert lines[0].startswith("source ")
        assert lines[0].endswith("/bin/activate")
        shell_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIRTUAL_ENV"))}
        script = "\n".join([*lines, "sagemaker-fastchat models wait 2 --timeout 60"])
        pasted = run_script(script, tmp_path, shell_env)
        assert pasted.returncode == 0, pasted.stdout + pasted.stderr + first.log_tail()
        assert "my-model: listed" in pasted.stdout
        assert "served by" in pasted.stdout
        before = listing(first)
        assert before["version"] == 2
    finally:
        assert first.stop() == 0
    assert {p.name for p in state.iterdir()} >= {local_state.DYNAMODB_FILE, local_state.SSM_FILE}

    second = run_started(LocalStack(state, ["--no-web"]))
    try:
        after = listing(second)
        assert after == before  # same models, same statuses, same version: nothing republished
        assert "my-model" in [m["name"] for m in second.model_set()["models"]]
        # The SSM history came back too: version 1 (the demo set) can be rolled back to, as version 3.
        assert second.cli("models", "rollback", "--to", "1").returncode == 0
        wait = second.cli("models", "wait", "3", "--timeout", "60")
        assert wait.returncode == 0, wait.stderr + second.log_tail()
        assert [m["name"] for m in second.model_set()["models"]] == DEMOS
    finally:
        assert second.stop() == 0

    fresh = run_started(LocalStack(state, ["--no-web", "--fresh"]))
    try:
        started = listing(fresh)
        assert started["version"] == 1
        assert [r["model"] for r in started["models"]] == DEMOS
    finally:
        assert fresh.stop() == 0
