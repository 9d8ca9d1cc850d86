"""Observability on the local stack: one trace per chat turn across API -> controller -> worker ->
SageMaker, a traced sync, `sagemaker-fastchat traces`, and JSON logs carrying the trace id."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import openai

from telemetry.collector import build_tree, group_traces, read_segments
from tests.local_stack import LocalStack

EXAMPLES = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples"


def wait_for_trace(stack: LocalStack, predicate: Any, timeout: float = 20) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for segments in group_traces(read_segments(stack.traces_file)).values():
            if predicate(segments):
                return segments
        time.sleep(0.2)
    raise AssertionError(f"no matching trace in {stack.traces_file}")


def names(node: dict[str, Any]) -> list[str]:
    return [node["name"], *[n for c in node.get("children", []) for n in names(c)]]


def test_chat_turn_is_one_trace(local_stack: LocalStack) -> None:
    """A streamed chat through the API is one trace: API segment -> worker segment (the API caches the
    controller's worker addresses, so no lookup per chat) -> SageMaker subsegment with model_name, endpoint_name, model_set_version and timing metadata."""
    client = openai.OpenAI(base_url=local_stack.api_url, api_key="none")
    started = time.time()
    marker = f"[[say:traced {started}]]"
    stream = client.chat.completions.create(
        model="demo-tgi", messages=[{"role": "user", "content": marker}], stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).startswith("traced")

    def is_chat(segments: list[dict[str, Any]]) -> bool:
        # this test's chat, not one of the many the shared stack served before (they would have left
        # `traces --last 20` by now)
        found = {s["name"] for s in segments}
        this_one = min(s["start_time"] for s in segments) >= started - 0.05
        return this_one and {"sagemaker-fastchat-api", "sagemaker-fastchat-worker"} <= found

    segments = wait_for_trace(local_stack, is_chat)
    assert len({s["trace_id"] for s in segments}) == 1
    (root,) = [r for r in build_tree(segments) if r["name"] == "sagemaker-fastchat-api"]
    tree = names(root)
    assert tree.index("sagemaker-fastchat-worker") > 0
    worker = next(s for s in segments if s["name"] == "sagemaker-fastchat-worker")
    (call,) = worker["subsegments"]
    assert call["name"] == "SageMaker demo-tgi"
    assert call["annotations"]["model_name"] == "demo-tgi"
    assert call["annotations"]["endpoint_name"] == "demo-tgi"
    assert call["annotations"]["model_set_version"] >= 1
    meta = call["metadata"]["sagemaker-fastchat"]
    assert meta["time_to_first_token_ms"] > 0
    assert meta["tokens"] >= 1
    assert meta["finish_reason"] == "stop"
    assert marker not in json.dumps(segments)  # no prompt text in traces

    # The worker's log line for this turn is JSON and carries the same trace id.
    trace_id = worker["trace_id"]
    lines = [line.split(" | ", 1)[1] for line in local_stack.lines if line.strip().startswith("worker |")]
    docs = [json.loads(line) for line in lines if line.startswith("{")]
    finished = [d for d in docs if d.get("event") == "generation_finished" and d.get("trace_id") == trace_id]
    assert finished, "no generation_finished log line with the trace id"
    assert finished[0]["model"] == "demo-tgi"
    assert marker not in "\n".join(lines)

    # `sagemaker-fastchat traces` prints it as a tree with durations.
    out = local_stack.cli("traces", "--last", "20").stdout
    assert f"trace {trace_id}" in out
    assert "SageMaker demo-tgi" in out
    assert " ms" in out


def test_sync_is_traced(local_stack: LocalStack) -> None:
    """A registry write produces a sync trace: the table scan and each SSM write, annotated with the
    published version and counts."""
    before = json.loads(local_stack.cli("models", "list", "--json").stdout)["version"]
    result = local_stack.cli(
        "models",
        "put",
        "traced-model",
        "--endpoint",
        "demo-tgi-traced",
        "--config",
        str(EXAMPLES / "tgi.json"),
    )
    assert result.returncode == 0, result.stderr

    def is_publish(segments: list[dict[str, Any]]) -> bool:
        return any(
            s["name"] == "sagemaker-fastchat-sync"
            and s.get("annotations", {}).get("published")
            and s["annotations"].get("model_set_version", 0) > before
            for s in segments
        )

    segments = wait_for_trace(local_stack, is_publish)
    sync = next(s for s in segments if s["name"] == "sagemaker-fastchat-sync")
    children = [c["name"] for c in sync["subsegments"]]
    assert "DynamoDB Scan" in children
    assert children.count("SSM PutParameter") >= 2  # the model parameter, then the manifest
    assert sync["annotations"]["models_added"] == 1
    assert local_stack.cli("models", "remove", "traced-model").returncode == 0


def test_all_log_lines_are_json(local_stack: LocalStack) -> None:
    """Every log line our processes wrote is one JSON object with timestamp, level and event."""
    ours = ("worker |", "sync |", "api |", "controller |")
    lines = [line.split(" | ", 1)[1] for line in local_stack.lines if line.strip().startswith(ours)]
    assert lines
    for line in lines:
        try:
            doc = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON log line: {line!r}") from None
        assert {"timestamp", "level", "event"} <= set(doc), line
