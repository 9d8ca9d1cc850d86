"""The harness's own parts, fast: the SSM fault proxy as botocore sees it, the wrong-endpoint rule and the
report's verdicts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

from benchmarks.reliability.fault_proxy import FaultProxy
from benchmarks.reliability.report import Check, Results, markdown
from benchmarks.reliability.swap import Timeline
from tests.helpers import free_port


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    from moto.server import ThreadedMotoServer

    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    fault = FaultProxy(f"http://127.0.0.1:{port}", free_port())
    fault.start()
    try:
        yield fault
    finally:
        fault.stop()
        moto.stop()


def test_fault_proxy_modes_keep_motos_state(proxy: FaultProxy) -> None:
    """pass forwards; 503 and throttle are the errors botocore knows; blackhole never answers; moto keeps
    what was written before the fault."""

    def client(read_timeout: float) -> Any:
        return boto3.client(
            "ssm",
            endpoint_url=proxy.url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
            config=botocore.config.Config(
                retries={"max_attempts": 1, "mode": "standard"}, read_timeout=read_timeout
            ),
        )

    ssm = client(30)
    ssm.put_parameter(Name="/p", Value="kept", Type="String")
    proxy.set_mode("throttle")
    with pytest.raises(botocore.exceptions.ClientError) as throttled:
        ssm.get_parameter(Name="/p")
    assert throttled.value.response["Error"]["Code"] == "ThrottlingException"
    proxy.set_mode("503")
    with pytest.raises(botocore.exceptions.ClientError) as unavailable:
        ssm.get_parameter(Name="/p")
    assert unavailable.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    proxy.set_mode("blackhole")
    with pytest.raises(botocore.exceptions.ReadTimeoutError):
        client(1).get_parameter(Name="/p")
    proxy.set_mode("pass")
    assert ssm.get_parameter(Name="/p")["Parameter"]["Value"] == "kept"
    assert min(proxy.counts["throttle"], proxy.counts["503"], proxy.counts["blackhole"]) >= 1


def snap(endpoint: str) -> dict[str, object]:
    return {"models": [{"name": "m", "endpoint_name": endpoint}]}


def test_a_stream_may_be_answered_by_any_endpoint_served_between_its_start_and_first_token() -> None:
    timeline = Timeline([(0.0, snap("e0")), (10.0, snap("e1")), (20.0, snap("e2"))])
    assert timeline.endpoints("m", 5.0, 6.0) == {"e0"}
    assert timeline.endpoints("m", 5.0, 12.0) == {"e0", "e1"}
    assert timeline.endpoints("m", 12.0, 13.0) == {"e1"}
    assert timeline.endpoints("other", 5.0, 25.0) == set()


def test_wrong_endpoint_rule_allows_for_late_polls() -> None:
    """A change first seen by a poll received at 11, the poll before it sent at 9, happened between 9 and
    11: streams in that span may get either endpoint; before 9 only the old one, after 11 the new one."""
    timeline = Timeline([(0.0, snap("e0")), (9.0, snap("e1"))], received=[0.5, 11.0])
    assert timeline.endpoints("m", 5.0, 6.0, slack=0) == {"e0"}
    assert timeline.endpoints("m", 10.0, 10.5, slack=0) == {"e0", "e1"}
    assert timeline.endpoints("m", 12.0, 13.0, slack=0) == {"e1"}


def test_report_gives_a_verdict_per_target() -> None:
    results = Results("ci")
    results.add(Check("swap", "streams", True, "16 streams", "0 failed"))
    results.add(Check("api", "a|b", False, "temperature 'hot'", "500 Internal Server Error"))
    text = markdown(results, "./dev reliability --profile ci")
    assert "| Swap under load: 0 failed / truncated / wrong-endpoint streams | **met** | 1 / 1 |" in text
    assert "**NOT met** | 0 / 1 |" in text
    assert "`a|b` | **FAIL** | temperature 'hot' | 500 Internal Server Error |" in text
    assert "nproc" in text


def test_mentions_finds_what_an_operator_can_read_about_all_models() -> None:
    from benchmarks.reliability.bad_input import mentions

    doc = {"rejected": {"m": "fine"}, "last_error": "all-models: model_names: not a string", "x": [1, None]}
    assert mentions(doc) == {"all-models: model_names: not a string"}
    assert mentions({"models": []}) == set()
