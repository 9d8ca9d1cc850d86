"""Test helpers shared across layers: example items, free ports, servers in threads."""

from __future__ import annotations

import copy
import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from typing import Any

import httpx
import uvicorn

EXAMPLES = ("tgi", "openai-sse", "lmi-jsonlines")


def example_item(name: str) -> dict[str, Any]:
    """A fresh copy of a shipped example config (sagemaker_fastchat/examples/NAME.json)."""
    text = resources.files("sagemaker_fastchat.examples").joinpath(f"{name}.json").read_text()
    return copy.deepcopy(json.loads(text))


DELETE: Any = object()  # as a value for set_path: remove the key instead


def set_path(doc: dict[str, Any], steps: list[str], value: Any) -> None:
    """Write `value` at the keys `steps` inside `doc` (DELETE removes the last key): test inputs that
    differ from a shipped example in one field."""
    *parents, last = steps
    node = doc
    for step in parents:
        node = node[step]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value


def free_port() -> int:
    """A free port below Linux's ephemeral range (32768-60999). A port the kernel hands out for binding
    (port 0) comes from that range, where any process's outgoing connection may take it before the
    server it was picked for binds it ('address already in use', seen in CI)."""
    for _ in range(200):
        port = random.randint(20_000, 32_767)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port between 20000 and 32767")


@contextmanager
def serve_in_thread(app: Any, port: int | None = None) -> Iterator[str]:
    """Run an ASGI app with uvicorn in a daemon thread; yields its base URL."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def standin_streams(url: str) -> tuple[int, int]:
    """Streams the stand-in has open, and streams whose client hung up before the end."""
    counts = httpx.get(f"{url}/ping").json()
    return counts["streams_open"], counts["streams_abandoned"]


def wait_for_streams(url: str, expected: tuple[int, int]) -> None:
    deadline = time.monotonic() + 10
    while standin_streams(url) != expected:
        assert time.monotonic() < deadline, f"stand-in streams {standin_streams(url)}, expected {expected}"
        time.sleep(0.05)


def worker_args(models_file: str, **overrides: Any) -> Any:
    """`sagemaker-fastchat worker` settings for an in-process worker on a registry file, unregistered."""
    from sagemaker_fastchat.settings import WorkerSettings

    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "controller_address": "http://127.0.0.1:9",
        "ssm_prefix": "/x",
        "models_file": models_file,
        "poll_interval": 0.5,
        "limit_concurrency": 4,
        "heartbeat_interval": 60.0,
        "read_timeout": 30.0,
        "first_token_timeout": 60.0,
        "unready_after": 30.0,
        "register_worker": False,
    }
    return WorkerSettings(**{**settings, **overrides})
