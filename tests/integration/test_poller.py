"""Model-set sources and the swap path without FastChat: the watched file source, backoff, versions only
moving forward, per-model build failures keeping the last good adapter."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError
from moto import mock_aws

from contract.spec import ModelSpec, parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.model_set import LiveModelSet, ModelSet, build_model_set
from runtime.poller import Poller
from runtime.sources import FileSource, Snapshot, SsmSource
from stores.ssm import SnapshotReader, SsmParameters, ssm_client
from stores.testing import InMemoryParameters
from tests.helpers import example_item


def make_adapter(spec: ModelSpec) -> SageMakerAdapter:
    if spec.conv_template == "no-such-template":
        raise ValueError("conv_template 'no-such-template' is not a FastChat conversation template")
    return SageMakerAdapter(spec, client=None)


def item(name: str, **changes: Any) -> dict[str, Any]:
    return {**example_item("tgi"), "model_name": name, **changes}


def wait_until(predicate: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[tuple[Path, LiveModelSet]]:
    path = tmp_path / "models.json"
    path.write_text(json.dumps([item("a")]))
    live = LiveModelSet()
    poller = Poller(FileSource(path), live, make_adapter, interval=0.5)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: live.loaded)
    yield path, live
    stop.set()
    thread.join(5)


def test_file_source_hot_swaps_on_change(watched: tuple[Path, LiveModelSet]) -> None:
    """Editing the watched file adds and changes models without a restart."""
    path, live = watched
    assert live.current.names == ["a"]
    adapter_a = live.current.get("a")
    path.write_text(json.dumps([item("a"), item("b", endpoint_name="demo-tgi-b")]))
    wait_until(lambda: live.current.names == ["a", "b"])
    assert live.current.get("a") is adapter_a  # unchanged spec: same adapter object


def test_file_source_keeps_last_good_on_bad_file(watched: tuple[Path, LiveModelSet]) -> None:
    """A file that is not JSON keeps the live set and records the error."""
    path, live = watched
    path.write_text("{broken")
    wait_until(lambda: live.last_error is not None)
    assert "not JSON" in (live.last_error or "")
    assert live.current.names == ["a"]


def test_file_source_invalid_model_keeps_its_last_good_spec(watched: tuple[Path, LiveModelSet]) -> None:
    """One invalid model is rejected and keeps its previous adapter; the others update."""
    path, live = watched
    before = live.current.get("a")
    path.write_text(json.dumps([item("a", endpoint_name="bad name"), item("c")]))
    wait_until(lambda: "c" in live.current.names)
    assert live.current.get("a") is before
    assert "endpoint_name" in live.current.rejected["a"]


def test_build_failure_is_per_model() -> None:
    """A model whose adapter cannot be built (unknown template) is rejected; its old adapter stays."""
    good, bad = parse_model_item(item("a")), parse_model_item(item("b"))
    first = build_model_set(Snapshot(1, [good, bad]), ModelSet(None), make_adapter, "t")
    # The contract refuses unknown templates; a worker can still meet one (a FastChat other than 0.2.36).
    broken = dataclasses.replace(parse_model_item(item("b")), conv_template="no-such-template", hash="new")
    second = build_model_set(Snapshot(2, [good, broken]), first, make_adapter, "t")
    assert second.get("b") is first.get("b")
    assert "not a FastChat conversation template" in second.rejected["b"]


def test_versions_only_move_forward() -> None:
    """An older manifest version is never swapped in."""
    live = LiveModelSet()
    assert live.swap(ModelSet(5))
    assert not live.swap(ModelSet(4))
    assert live.current.version == 5


def test_backoff_is_exponential_capped_and_jittered() -> None:
    """Errors double the delay up to max_backoff; jitter stays within its bounds."""
    poller = Poller(
        FileSource(Path("/nonexistent")),
        LiveModelSet(),
        make_adapter,
        interval=1.0,
        jitter=0.1,
        max_backoff=8.0,
    )
    assert 0.9 <= poller.next_delay() <= 1.1
    poller.failures = 2
    assert 3.6 <= poller.next_delay() <= 4.4
    poller.failures = 10
    assert 7.2 <= poller.next_delay() <= 8.8


@pytest.fixture
def blackhole() -> Iterator[str]:
    """A TCP server that accepts connections and never answers (an SSM behind a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


def test_worker_ssm_client_has_bounded_timeouts() -> None:
    """boto3's defaults (60 s connect, 60 s read, several attempts) would hold a poll for minutes."""
    config = ssm_client(region_name="us-east-1").meta.config
    assert config.connect_timeout <= 5
    assert config.read_timeout <= 10
    assert config.retries["total_max_attempts"] <= 2


def test_ssm_blackhole_is_recorded_as_last_error(blackhole: str) -> None:
    """An SSM that never answers is a poll error in `last_error` (and the last good set stays)."""
    client = ssm_client(
        Config(read_timeout=0.3, retries={"mode": "standard", "total_max_attempts": 1}),
        endpoint_url=blackhole,
        region_name="us-east-1",
    )
    live = LiveModelSet()
    live.swap(ModelSet(3, order=()))
    poller = Poller(SsmSource(SnapshotReader(SsmParameters(client), "/p")), live, make_adapter)
    try:
        poller._try()
    finally:
        client.close()  # its pooled connection to the black hole is still open after the timeout
    assert "ReadTimeoutError" in (live.last_error or "")
    assert live.current.version == 3
    assert poller.failures == 1


@pytest.mark.parametrize("error", [ConnectTimeoutError, ReadTimeoutError])
def test_timeouts_from_the_client_are_recorded(error: type[Exception]) -> None:
    """botocore's timeout errors, whichever the call raises, end up in last_error."""

    timing_out = InMemoryParameters()
    timing_out.fail("get", error=error(endpoint_url="https://ssm.us-east-1.amazonaws.com"))
    live = LiveModelSet()
    poller = Poller(SsmSource(SnapshotReader(timing_out, "/p")), live, make_adapter)
    poller._try()
    assert (live.last_error or "").startswith(error.__name__)


def test_ssm_source_carries_warnings_and_not_published_to_model_set() -> None:
    """Duplicate-name warnings and the sync's not-published reason reach the worker's `/model-set`."""
    from tests.integration.test_sync import PREFIX, Registry

    with mock_aws():
        reg = Registry()
        reg.put_model("a")
        reg.set_active("a, a")
        reg.handler.sync()
        live = LiveModelSet()
        poller = Poller(SsmSource(SnapshotReader(SsmParameters(reg.ssm), PREFIX)), live, make_adapter)
        poller.poll_once()
        described = live.current.describe()
        assert any("'a' is listed more than once" in w for w in described["warnings"])
        assert described["not_published"] is None
        reg.delete("all-models")
        reg.handler.sync()
        poller.poll_once()
        described = live.current.describe()
        assert [m["name"] for m in described["models"]] == ["a"]
        assert "'all-models' item is missing" in described["not_published"]


def test_file_source_carries_warnings() -> None:
    """The file source's duplicate warnings show in `/model-set` too."""
    snapshot = Snapshot(None, [parse_model_item(item("a"))], warnings=("w",))
    assert build_model_set(snapshot, ModelSet(None), make_adapter, "t").describe()["warnings"] == ["w"]
