"""Warm before traffic, against the SageMaker stand-in through botocore: DescribeEndpoint as the stand-in
answers it, and the worker's HTTP protocol (in-process, watched registry file) never sending a request to a
candidate that is not InService, does not exist, or fails its probe, while the last good spec serves."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from moto import mock_aws

from contract.endpoints import FakeEndpointChecker
from contract.registry import evaluate_registry
from contract.spec import parse_model_item
from runtime.adapter import SageMakerAdapter
from runtime.model_set import LiveModelSet
from runtime.poller import Poller
from runtime.sources import FileSource, SsmSource
from runtime.warmup import Warmup
from sagemaker_fastchat.cli import build_parser
from sagemaker_fastchat.launch import build_warmup, build_worker, worker_settings
from sagemaker_fastchat.settings import WorkerSettings
from sagemaker_fastchat.standin.server import StandinConfig, create_app
from stores.endpoints import Boto3EndpointChecker
from stores.ssm import SnapshotReader, SnapshotWriter, SsmParameters
from sync.publisher import publish
from telemetry.testing import recording_tracer, sent
from tests.helpers import example_item, serve_in_thread


def model(name: str, endpoint: str, **extra: Any) -> dict[str, Any]:
    return {**example_item("tgi"), "model_name": name, "endpoint_name": endpoint, **extra}


def wait_until(predicate: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    """A stand-in of its own (its request log and counters are this module's alone), with a forward."""
    with serve_in_thread(
        create_app(StandinConfig(forwards={"my-local-model": "http://127.0.0.1:9/x"}))
    ) as url:
        yield url


def checker(url: str) -> Boto3EndpointChecker:
    return Boto3EndpointChecker(boto3.client("sagemaker", endpoint_url=url, region_name="us-east-1"))


def requests_to(url: str, endpoint: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{url}/_standin/requests", params={"endpoint": endpoint}).json())


def describes(url: str) -> int:
    return int(httpx.get(f"{url}/ping").json()["describes"])


@pytest.mark.parametrize(
    ("endpoint", "ok", "reason"),
    [
        ("demo-tgi", True, None),
        ("demo-lmi-anything-2", True, None),
        ("my-local-model", True, None),
        ("demo-tgi-creating", False, "endpoint demo-tgi-creating is Creating, not InService"),
        ("demo-openai-failed-x", False, "is Failed, not InService (demo endpoint failed on demand"),
        ("no-such-endpoint", False, 'does not exist (Could not find endpoint "arn:aws:sagemaker:'),
    ],
)
def test_standin_answers_describe_endpoint(standin: str, endpoint: str, ok: bool, reason: str | None) -> None:
    """botocore's `sagemaker` client against the stand-in: demo and forwarded endpoints are InService,
    `-creating`/`-failed` demo names report those states, anything else does not exist."""
    verdict = checker(standin).check(endpoint)
    assert verdict.ok is ok
    if reason is None:
        assert verdict.reason is None
        assert verdict.status == "InService"
    else:
        assert verdict.reason is not None
        assert reason in verdict.reason


def test_standin_refuses_invocations_of_endpoints_not_in_service(standin: str) -> None:
    """A demo endpoint reporting Creating does not stream either (as AWS would not)."""
    runtime = boto3.client("sagemaker-runtime", endpoint_url=standin, region_name="us-east-1")
    with pytest.raises(runtime.exceptions.ClientError, match="Creating, not InService"):
        runtime.invoke_endpoint_with_response_stream(
            EndpointName="demo-tgi-creating-z", Body=b'{"inputs": "hi"}', ContentType="application/json"
        )


@pytest.fixture
def worker(tmp_path: Path, standin: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """Our worker app in-process (the same build as `sagemaker-fastchat worker --models-file`)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", standin)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER", standin)
    path = tmp_path / "models.json"
    path.write_text(json.dumps([model("a", "demo-tgi-w1")]))
    flags = "--port 0 --poll-interval 0.2 --no-register --limit-concurrency 4 --endpoint-recheck 300"
    args = build_parser().parse_args(["worker", "--models-file", str(path), *flags.split()])
    _, app = build_worker(worker_settings(args))
    with serve_in_thread(app) as url:
        wait_until(lambda: httpx.get(f"{url}/ready").status_code == 200)
        yield url, path


def generate(url: str, model_name: str, prompt: str) -> dict[str, Any]:
    params = {"model": model_name, "prompt": prompt, "temperature": 0.7, "max_new_tokens": 20}
    return dict(httpx.post(f"{url}/worker_generate", json=params, timeout=10).json())


def test_candidates_that_are_not_ready_never_take_a_request(worker: tuple[str, Path], standin: str) -> None:
    """A change to an endpoint still Creating keeps the last good spec serving; a new model on a missing
    endpoint, or whose probe fails, stays out; a model whose probe passes goes live. Every reason is in
    /model-set, and no chat request ever reaches a refused candidate's endpoint."""
    url, path = worker
    path.write_text(
        json.dumps(
            [
                model("a", "demo-tgi-creating-w"),
                model("b", "no-such-endpoint-w"),
                model("c", "demo-tgi-broken-w", probe=True),
                model("d", "demo-tgi-w2", probe=True),
            ]
        )
    )
    wait_until(lambda: "d" in [m["name"] for m in httpx.get(f"{url}/model-set").json()["models"]])
    state = httpx.get(f"{url}/model-set").json()
    live = {m["name"]: m for m in state["models"]}
    assert list(live) == ["a", "d"]
    assert live["a"]["endpoint_name"] == "demo-tgi-w1"  # the last good spec
    assert state["rejected"]["a"] == "a: endpoint demo-tgi-creating-w is Creating, not InService"
    assert "endpoint no-such-endpoint-w does not exist" in state["rejected"]["b"]
    assert state["rejected"]["c"].startswith("c: the probe failed:")
    assert "ModelStreamError" in state["rejected"]["c"]
    assert state["endpoint_check"]["enabled"] is True
    assert set(state["endpoint_check"]["refused"]) == {"a", "b", "c"}

    assert generate(url, "a", "[[say:still the old endpoint]]")["text"] == "still the old endpoint"
    for name in ("b", "c"):
        assert "not in the live model set" in generate(url, name, "hello")["text"]
    assert generate(url, "d", "[[say:probed and live]]")["text"] == "probed and live"
    assert requests_to(standin, "demo-tgi-creating-w") == []
    assert requests_to(standin, "no-such-endpoint-w") == []
    probes = requests_to(standin, "demo-tgi-broken-w")
    assert len(probes) == 1  # the probe itself, one token
    assert json.loads(probes[0]["body"])["parameters"]["max_new_tokens"] == 1
    assert requests_to(standin, "demo-tgi-w1")[-1]["body"].count("still the old endpoint") == 1


def test_check_runs_once_per_spec_change_not_per_poll(worker: tuple[str, Path], standin: str) -> None:
    """Polls and unrelated changes do not describe an admitted endpoint again; a new spec is described."""
    url, path = worker
    before = describes(standin)
    loaded_at = httpx.get(f"{url}/model-set").json()["loaded_at"]
    path.write_text(path.read_text() + " ")  # the file changed, the spec did not: a rebuild, no check
    wait_until(lambda: httpx.get(f"{url}/model-set").json()["loaded_at"] != loaded_at)
    assert describes(standin) == before
    path.write_text(json.dumps([model("a", "demo-tgi-w1"), model("e", "demo-lmi-w3")]))
    wait_until(lambda: "e" in [m["name"] for m in httpx.get(f"{url}/model-set").json()["models"]])
    assert describes(standin) == before + 1  # only e's endpoint; a is unchanged


def test_refused_candidate_goes_live_when_its_endpoint_is_ready(tmp_path: Path) -> None:
    """A candidate refused while its endpoint was Creating is checked again after `recheck` seconds and
    swapped in once InService, with no change to the registry."""
    path = tmp_path / "models.json"
    path.write_text(json.dumps([model("a", "e")]))
    fake = FakeEndpointChecker({"e": "Creating"})
    now = [0.0]
    live = LiveModelSet()
    warmup = Warmup(fake, recheck=30.0, clock=lambda: now[0])
    poller = Poller(
        FileSource(path), live, lambda s: SageMakerAdapter(s, client=None), interval=1.0, warmup=warmup
    )
    assert poller.poll_once()
    assert live.current.names == []
    assert "Creating" in live.current.rejected["a"]
    fake.statuses["e"] = "InService"
    assert not poller.recheck_due()
    now[0] = 31.0
    assert poller.recheck_due()
    assert poller.poll_once()
    assert live.current.names == ["a"]
    assert live.current.rejected == {}
    poller.poll_once()  # a file source rebuilds on every call: the admitted spec is not checked again
    assert fake.calls == ["e", "e"]


def test_probe_spec_attribute_is_optional_and_boolean() -> None:
    """`probe` is optional; true is kept in the spec (and its hash), anything but a boolean is refused."""
    plain = parse_model_item(model("a", "e"))
    probed = parse_model_item(model("a", "e", probe=True))
    assert not plain.probe
    assert probed.probe
    assert plain.hash != probed.hash
    assert parse_model_item(model("a", "e", probe=False)).hash == plain.hash
    with pytest.raises(ValueError, match="probe: must be true or false"):
        parse_model_item(model("a", "e", probe="yes"))


def test_ssm_poller_checks_once_per_version_and_rechecks_refused_at_the_same_version() -> None:
    """On SSM (moto): a refused change at version 2 keeps version 1's spec; polls at version 2 check
    nothing; once the recheck is due and the endpoint serves, the candidate goes live without a new
    version being published."""
    with mock_aws():
        ssm = boto3.client("ssm", region_name="us-east-1")
        store = SnapshotWriter(SsmParameters(ssm), "/warm")

        def publish_items(*items: dict[str, Any]) -> None:
            names = {"model_name": "all-models", "model_names": ",".join(i["model_name"] for i in items)}
            publish(evaluate_registry([*items, names]), store)

        fake = FakeEndpointChecker({"old": "InService", "new": "Creating"})
        now = [0.0]
        live = LiveModelSet()
        poller = Poller(
            SsmSource(SnapshotReader(SsmParameters(ssm), "/warm")),
            live,
            lambda s: SageMakerAdapter(s, client=None),
            warmup=Warmup(fake, recheck=30.0, clock=lambda: now[0]),
        )
        publish_items(model("a", "old"))
        assert poller.poll_once()
        publish_items(model("a", "new"))
        assert poller.poll_once()
        first = live.current
        assert first.version == 2
        assert first.adapters["a"].spec.endpoint_name == "old"
        assert "Creating" in first.rejected["a"]
        assert fake.calls == ["old", "new"]
        now[0] = 10.0
        assert not poller.poll_once()  # same version, recheck not due: not even the manifest is read
        assert fake.calls == ["old", "new"]
        now[0] = 31.0
        assert not poller.poll_once()  # due, still Creating: checked again, nothing to swap
        assert fake.calls == ["old", "new", "new"]
        fake.statuses["new"] = "InService"
        now[0] = 62.0
        assert poller.poll_once()
        assert live.current.version == 2
        assert live.current.adapters["a"].spec.endpoint_name == "new"
        assert live.current.rejected == {}


def test_endpoint_check_is_on_by_default_and_can_be_turned_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """On unless `--no-endpoint-check` or ENDPOINT_CHECK=false; off, /model-set says so."""
    monkeypatch.delenv("ENDPOINT_CHECK", raising=False)

    def parsed(*argv: str) -> WorkerSettings:
        return worker_settings(build_parser().parse_args(["worker", *argv]))

    assert parsed().endpoint_check is True
    assert parsed("--no-endpoint-check").endpoint_check is False
    monkeypatch.setenv("ENDPOINT_CHECK", "false")
    assert parsed().endpoint_check is False
    assert build_warmup(parsed()) is None


def test_refusal_is_in_the_pollers_trace(tmp_path: Path) -> None:
    """The poller's segment holds a `warm-up` subsegment with the candidates and why they were refused."""
    traced = recording_tracer("sagemaker-fastchat-poller")
    path = tmp_path / "models.json"
    path.write_text(json.dumps([model("a", "e"), model("b", "f")]))
    warmup = Warmup(FakeEndpointChecker({"e": "Creating", "f": "InService"}))
    Poller(
        FileSource(path),
        LiveModelSet(),
        lambda s: SageMakerAdapter(s, client=None),
        warmup=warmup,
        tracer=traced,
    ).poll_once()
    segment = sent(traced)[-1]
    sub = next(s for s in segment["subsegments"] if s["name"] == "warm-up")
    assert sub["metadata"]["sagemaker-fastchat"]["candidates"] == ["a", "b"]
    assert sub["metadata"]["sagemaker-fastchat"]["refused"] == {"a": "endpoint e is Creating, not InService"}
    assert sub["annotations"]["models_refused"] == 1
    assert segment["annotations"]["models_rejected"] == 1
