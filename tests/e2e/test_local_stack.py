"""End to end on the local stack: chat through the OpenAI API, add a model with the CLI, an invalid config
is rejected while the old spec keeps serving, and Ctrl-C leaves nothing behind."""

from __future__ import annotations

import json
import time
from pathlib import Path

import boto3
import httpx
import openai

from tests.local_stack import LocalStack

EXAMPLES = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples"


def chat(stack: LocalStack, model: str, prompt: str) -> str:
    client = openai.OpenAI(base_url=stack.api_url, api_key="none", max_retries=0, timeout=60)
    stream = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], stream=True
    )
    return "".join(c.choices[0].delta.content or "" for c in stream if c.choices)


def test_demo_models_stream(local_stack: LocalStack) -> None:
    """The three demo models (TGI, OpenAI-SSE, LMI) are listed and stream through the OpenAI API."""
    client = openai.OpenAI(base_url=local_stack.api_url, api_key="none")
    assert {m.id for m in client.models.list().data} >= {"demo-tgi", "demo-openai", "demo-lmi"}
    for model in ("demo-tgi", "demo-openai", "demo-lmi"):
        assert chat(local_stack, model, f"[[say:hello from {model}]]") == f"hello from {model}"


def test_health_checks_of_the_deployment_answer(local_stack: LocalStack) -> None:
    """The routes the task definition's health checks and the load balancer use answer here too."""
    ports = local_stack.ports
    checks = [
        ["healthcheck", "--method", "POST", f"http://127.0.0.1:{ports['controller']}/list_models"],
        ["healthcheck", f"http://127.0.0.1:{ports['worker']}/ready"],
        ["healthcheck", f"http://127.0.0.1:{ports['api']}/health"],
        ["healthcheck", f"http://127.0.0.1:{ports['web']}/config"],
    ]
    for check in checks:
        result = local_stack.cli(*check)
        assert result.returncode == 0, (check, result.stderr)
    assert local_stack.cli("healthcheck", f"http://127.0.0.1:{ports['api']}/nope").returncode == 1


def test_idle_connections_outlive_the_load_balancers_idle_timeout(local_stack: LocalStack) -> None:
    """The API and the web UI keep an idle keep-alive connection open (HTTP_KEEP_ALIVE_SECONDS, 310 s by
    default, above the load balancer's 300 s): uvicorn's default closed it after 5 s, and a load balancer
    reusing such a connection answered the user with a 502. Past 5 s idle, each socket still answers."""
    import http.client

    paths = {"api": "/health", "web": "/config"}
    connections = {
        name: http.client.HTTPConnection("127.0.0.1", local_stack.ports[name], timeout=30) for name in paths
    }

    def ask(name: str) -> int:
        connections[name].request("GET", paths[name])  # HTTP/1.1: the connection is kept
        response = connections[name].getresponse()
        response.read()
        return response.status

    try:
        for name in paths:
            assert ask(name) == 200
        sockets = {name: c.sock for name, c in connections.items()}
        time.sleep(7)  # idle past uvicorn's default keep-alive of 5 s
        for name in paths:
            # a closed connection fails here (http.client does not reconnect a socket it still holds)
            assert ask(name) == 200, name
            assert connections[name].sock is sockets[name]
    finally:
        for c in connections.values():
            c.close()


def test_conv_template_applies_in_the_api_path(local_stack: LocalStack) -> None:
    """demo-openai's conv_template (raw) shapes the prompt the endpoint receives; demo-tgi's does not."""
    chat(local_stack, "demo-openai", "[[say:x]] template check")
    chat(local_stack, "demo-tgi", "[[say:x]] template check")
    bodies = httpx.get(f"{local_stack.standin_url}/_standin/requests").json()
    last = {b["endpoint"]: json.loads(b["body"]) for b in bodies}
    assert last["demo-openai"]["messages"][0]["content"] == "[[say:x]] template check"  # raw: no roles added
    # demo-tgi: a name FastChat does not recognise and no conv_template: neutral turns, not one_shot
    assert last["demo-tgi"]["inputs"] == "\nUser: [[say:x]] template check\nAssistant:"


def live_version(stack: LocalStack) -> int:
    return int(json.loads(stack.cli("models", "list", "--json").stdout)["version"] or 0)


def test_cli_adds_a_model_and_it_is_served(local_stack: LocalStack) -> None:
    """`models put` -> the stream -> the sync -> SSM -> the worker: served without a restart."""
    before = live_version(local_stack)
    result = local_stack.cli(
        "models",
        "put",
        "Added (CLI)",
        "--endpoint",
        "demo-lmi-added",
        "--config",
        str(EXAMPLES / "lmi-jsonlines.json"),
    )
    assert result.returncode == 0, result.stderr
    assert "Added (CLI): no conv_template, and FastChat recognises no template" in result.stderr
    wait = local_stack.cli("models", "wait", str(before + 1), "--timeout", "30")
    assert wait.returncode == 0, wait.stderr + local_stack.log_tail()
    assert "served by" in wait.stdout
    assert "Added (CLI)" in [m["name"] for m in local_stack.model_set()["models"]]
    assert chat(local_stack, "Added (CLI)", "[[say:new model answers]]") == "new model answers"
    rows = {r["model"]: r for r in json.loads(local_stack.cli("models", "list", "--json").stdout)["models"]}
    assert rows["Added (CLI)"]["status"] == "live"
    assert rows["Added (CLI)"]["template_by_name"] is True
    assert "warning: Added (CLI): no conv_template" in local_stack.cli("models", "list").stderr


def test_cli_refuses_invalid_config(local_stack: LocalStack, tmp_path: Path) -> None:
    """`models put` validates before writing: exit 1, one line naming model and field, nothing written."""
    bad = json.loads((EXAMPLES / "tgi.json").read_text())
    del bad["endpoint_req_config"]["response"]["mapping"]["text"]
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    result = local_stack.cli(
        "models", "put", "never-written", "--endpoint", "demo-tgi", "--config", str(path)
    )
    assert result.returncode == 1
    assert "never-written: endpoint_req_config.response.mapping.text: is missing" in result.stderr
    rows = [r["model"] for r in json.loads(local_stack.cli("models", "list", "--json").stdout)["models"]]
    assert "never-written" not in rows


def test_invalid_item_written_anyway_is_rejected_and_old_spec_serves(local_stack: LocalStack) -> None:
    """An invalid item written straight into the table is rejected by the sync; the model keeps its
    last good spec, the reason is visible in `models list`, and the model still answers."""
    ddb = boto3.client(
        "dynamodb",
        endpoint_url=local_stack.env["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    ddb.put_item(
        TableName="sagemaker-fastchat-models",
        Item={
            "model_name": {"S": "demo-lmi"},
            "endpoint_name": {"S": "demo-lmi"},
            "endpoint_req_config": {"S": '{"request": {"defaults": {}, "mapping": {}}}'},
        },
    )
    deadline = time.monotonic() + 30
    while True:
        rows = {
            r["model"]: r for r in json.loads(local_stack.cli("models", "list", "--json").stdout)["models"]
        }
        if rows["demo-lmi"]["status"].startswith("rejected"):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.3)
    assert "demo-lmi: endpoint_req_config.request.mapping.prompt: is missing" in rows["demo-lmi"]["reason"]
    assert rows["demo-lmi"]["status"] == "rejected (last good spec live)"
    assert chat(local_stack, "demo-lmi", "[[say:still the old spec]]") == "still the old spec"
    assert (
        local_stack.cli("models", "wait", str(live_version(local_stack)), "--timeout", "30").returncode == 0
    )
    assert "demo-lmi" in local_stack.model_set()["rejected"]
