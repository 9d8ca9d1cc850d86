"""The worker's HTTP app in-process (FastChat protocol), served from a watched registry file against the
SageMaker stand-in: concurrency slots are always given back, also when a client goes away mid-stream."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from runtime.launch import build_worker
from tests.helpers import example_item, serve_in_thread, standin_streams, wait_for_streams


@pytest.fixture
def worker_url(tmp_path: Path, standin_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin_url)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin_url)
    path = tmp_path / "models.json"
    path.write_text(json.dumps([{**example_item("tgi"), "model_name": "m"}]))
    args = argparse.Namespace(
        host="127.0.0.1",
        port=0,
        worker_address=None,
        controller_address="http://127.0.0.1:9",
        ssm_prefix="/x",
        models_file=str(path),
        poll_interval=0.5,
        limit_concurrency=4,
        heartbeat_interval=60.0,
        read_timeout=30.0,
        no_register=True,
    )
    _, app = build_worker(args)
    with serve_in_thread(app) as url:
        deadline = time.monotonic() + 10
        while httpx.get(f"{url}/ready").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        yield url


def queue_length(url: str) -> int:
    return int(httpx.post(f"{url}/worker_get_status").json()["queue_length"])


def test_protocol_routes(worker_url: str) -> None:
    """Status, count_token, model_details, conv template and a streamed generation."""
    assert httpx.post(f"{worker_url}/worker_get_status").json()["model_names"] == ["m"]
    assert httpx.post(f"{worker_url}/count_token", json={"prompt": "abcdefgh"}).json() == {
        "count": 2,
        "error_code": 0,
    }
    assert httpx.post(f"{worker_url}/model_details", json={"model": "m"}).json() == {"context_length": 4096}
    assert "name" in httpx.post(f"{worker_url}/worker_get_conv_template", json={"model": "m"}).json()["conv"]
    params = {"model": "m", "prompt": "[[say:over the protocol]]", "temperature": 0.7, "max_new_tokens": 20}
    with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params) as r:
        chunks = [json.loads(c) for c in r.read().split(b"\0") if c]
    assert chunks[-1]["text"] == "over the protocol"
    reply = httpx.post(f"{worker_url}/worker_generate", json=params).json()
    assert reply["text"] == "over the protocol"
    missing = httpx.post(f"{worker_url}/worker_generate", json={**params, "model": "nope"}).json()
    assert missing["error_code"] != 0
    assert "is not in the live model set" in missing["text"]


def test_slots_are_released_when_clients_disconnect(worker_url: str, standin_url: str) -> None:
    """Clients that drop a stream mid-way give their concurrency slot back (limit 4, 12 dropped), and the
    worker hangs up on the endpoint for each of them."""
    _, abandoned = standin_streams(standin_url)
    params = {"model": "m", "prompt": "[[tokens:200]] [[rate:20]]", "temperature": 0.7, "max_new_tokens": 300}
    for _ in range(12):
        with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params, timeout=10) as r:
            next(r.iter_bytes())  # the first chunk, then hang up
    deadline = time.monotonic() + 10
    while queue_length(worker_url) != 0:
        assert time.monotonic() < deadline, f"slots still held: {queue_length(worker_url)}"
        time.sleep(0.1)
    wait_for_streams(standin_url, (0, abandoned + 12))
    params["prompt"] = "[[say:still serving]]"
    with httpx.stream("POST", f"{worker_url}/worker_generate_stream", json=params, timeout=10) as r:
        assert json.loads(r.read().split(b"\0")[-2])["text"] == "still serving"
