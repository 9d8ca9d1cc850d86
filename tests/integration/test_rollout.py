"""Staged rollouts on moto: the CLI starts one, the step runner (with the in-memory outcome store and an
injected clock) decides, and every step is a conditional registry write that the real sync publishes.

Acceptance (issue 17): a candidate failing 100% of requests is rolled back automatically within one bake
window after min-requests is reached; no rollback below min-requests (one error in 10 does not trip it).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from contract.dynamo import untype_item
from contract.endpoints import FakeEndpointChecker
from contract.spec import ModelSpec, parse_model_item
from rollout.decide import since
from rollout.histogram import bucket_of
from rollout.state import ABORTED, DONE, PAUSED, ROLLED_BACK, RUNNING, RolloutState, parse_state
from sagemaker_fastchat import registry_ops, rollout_cli
from sagemaker_fastchat.cli import main
from stores.registry import ConcurrentChangeError, DynamoRegistry
from stores.rollout_metrics import DynamoOutcomeStore, OutcomeCounts, create_table
from stores.ssm import SnapshotReader
from stores.testing import InMemoryParameters, MemoryOutcomeStore
from sync import rollout_step
from sync.publisher import specs_at
from sync.rollout_step import RolloutRunner, update_item, write_state
from tests.helpers import example_item
from tests.integration.test_sync import PREFIX, TABLE, Registry

MODEL = "demo-tgi"
LIVE = "demo-tgi"
CAND = "demo-tgi-v2"
BAKE = 600


class Stack:
    """The registry with its stream and the real sync, outcome counts in memory, a clock we move."""

    def __init__(self) -> None:
        self.reg = Registry()
        registry_ops.put_model(
            registry_ops.Registry(DynamoRegistry(self.reg.ddb, TABLE)), example_item("tgi"), active=True
        )
        self.reg.deliver()
        self.outcomes = MemoryOutcomeStore()
        self.now = 0.0
        self.runner = RolloutRunner(
            DynamoRegistry(self.reg.ddb, TABLE), self.outcomes, self.reg.reader, clock=lambda: self.now
        )

    def item(self) -> dict[str, Any]:
        found = DynamoRegistry(self.reg.ddb, TABLE).get(MODEL)
        assert found is not None
        return untype_item(found)

    def state(self) -> RolloutState:
        state = parse_state(self.item()["rollout"])
        assert isinstance(state, RolloutState)
        return state

    def published(self) -> ModelSpec:
        """What workers serve: deliver the stream's records to the sync, read the live spec from SSM."""
        self.reg.deliver()
        _, specs = specs_at(self.reg.reader)
        (spec,) = [s for s in specs if s.name == MODEL]
        return spec

    def traffic(self, variant: str, requests: int, errors: int = 0, ttft_ms: float = 100.0) -> None:
        """Outcomes as workers record them, in the clock's current minute."""
        ok = requests - errors
        hist = {bucket_of(ttft_ms): ok} if ok else {}
        self.outcomes.add([OutcomeCounts(MODEL, variant, int(self.now // 60), requests, errors, hist)])

    def tick(self, deliver: bool = True) -> rollout_step.StepResult:
        """One tick of the runner, after the sync has published the registry's writes (it follows the
        stream within seconds), unless `deliver` is False."""
        if deliver:
            self.reg.deliver()
        (result,) = self.runner.tick()
        return result


def rollout(*args: str) -> int:
    return main(["models", "--table", TABLE, "--ssm-prefix", PREFIX, "rollout", MODEL, *args])


def ctl(*args: str) -> int:
    return main(["rollout", *args[:1], MODEL, "--table", TABLE, *args[1:]])


def serving(*endpoints: str) -> None:
    """SageMaker endpoints on moto (InService), which `models rollout` describes before it writes."""
    sm = boto3.client("sagemaker", region_name="us-east-1")
    role = "arn:aws:iam::123456789012:role/sagemaker"
    for name in endpoints:
        sm.create_model(ModelName=name, ExecutionRoleArn=role, PrimaryContainer={"Image": "tgi:latest"})
        variant = {"VariantName": "all", "ModelName": name, "InitialInstanceCount": 1}
        sm.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[{**variant, "InstanceType": "ml.g4dn.xlarge"}]
        )
        sm.create_endpoint(EndpointName=name, EndpointConfigName=name)


@pytest.fixture
def stack() -> Iterator[Stack]:
    with mock_aws():
        serving(CAND, "demo-v3", "demo-tgi-v3")
        s = Stack()
        create_table(s.reg.ddb, "sagemaker-fastchat-rollout-metrics")
        assert rollout("--endpoint", CAND, "--bake", "10m") == 0
        s.now = s.state().started_at
        assert s.tick().action == "hold"  # the first step is published: its bake starts now
        assert s.state().step_live_at == s.now
        yield s


def weights(spec: ModelSpec) -> dict[str, float]:
    return {v.endpoint_name: v.weight for v in spec.variants()}


def test_start_puts_the_candidate_at_the_first_step_and_publishes_it(stack: Stack) -> None:
    state = stack.state()
    assert (state.status, state.weight, state.candidate, state.baseline) == (RUNNING, 5.0, CAND, LIVE)
    assert state.bake_seconds == BAKE
    assert weights(stack.published()) == {LIVE: 95.0, CAND: 5.0}


def test_a_failing_candidate_is_rolled_back_within_one_bake_after_min_requests(stack: Stack) -> None:
    """100% errors: nothing happens below 50 requests; the tick after the 50th rolls back, long before
    the bake is over, and the published spec sends the candidate nothing."""
    stack.traffic(LIVE, 900)
    stack.traffic(CAND, 30, errors=30)
    stack.now += 60
    assert stack.tick().action == "hold"
    assert weights(stack.published())[CAND] == 5.0
    stack.traffic(CAND, 27, errors=27)
    stack.now += 60
    result = stack.tick()
    assert result.action == "rollback"
    assert stack.now - stack.state().step_started_at < BAKE
    state = stack.state()
    assert (state.status, state.weight) == (ROLLED_BACK, 0.0)
    assert state.reason == f"error rate 100% over 57 requests {since(state)} > 2%"
    assert weights(stack.published()) == {LIVE: 100.0, CAND: 0.0}
    stack.now += 10 * BAKE
    assert stack.tick().action == "nothing"  # a rolled-back rollout stays put


def test_no_rollback_below_min_requests(stack: Stack) -> None:
    """One error in 10 requests, however long it bakes, rolls nothing back and writes nothing."""
    stack.traffic(LIVE, 500)
    stack.traffic(CAND, 10, errors=1)
    before = stack.item()
    for _ in range(5):
        stack.now += BAKE
        result = stack.tick()
        assert result.action == "hold"
        assert "waiting for 10 of 50 candidate requests" in result.reason
    assert stack.item() == before
    assert weights(stack.published())[CAND] == 5.0


def test_a_healthy_candidate_is_promoted_step_by_step(stack: Stack) -> None:
    """5 -> 25 -> 50 -> promoted, each step published; at the end the candidate is the model's endpoint."""
    seen = []
    for _ in range(3):
        stack.now += BAKE
        stack.traffic(LIVE, 400)
        stack.traffic(CAND, 100, errors=1, ttft_ms=110)
        result = stack.tick()
        seen.append((result.action, result.weight, weights(stack.published())))
        if result.action == "advance":  # the next tick sees the new step published: it bakes from then
            assert stack.tick().action == "hold"
    assert seen == [
        ("advance", 25.0, {LIVE: 75.0, CAND: 25.0}),
        ("advance", 50.0, {LIVE: 50.0, CAND: 50.0}),
        ("promote", 100.0, {CAND: 100.0}),
    ]
    assert stack.state().status == DONE
    assert stack.published().endpoint_name == CAND
    assert "variants" not in stack.item()


def test_the_candidate_config_is_promoted_with_it(stack: Stack, tmp_path: Path) -> None:
    assert ctl("abort") == 0
    config = tmp_path / "candidate.json"
    config.write_text(json.dumps(example_item("openai-sse")))  # a whole item: its config is taken
    assert rollout("--endpoint", "demo-v3", "--config", str(config), "--steps", "50,100", "--bake", "0") == 0
    # this rollout started on the wall clock, maybe a minute after the fixture's: its traffic is recorded
    # in its own starting minute (it fell outside the window when a minute boundary passed in between)
    stack.now = stack.state().started_at
    stack.traffic("demo-v3", 60)
    stack.now += 1
    assert stack.tick().action == "promote"
    spec = stack.published()
    assert spec.endpoint_name == "demo-v3"
    assert (
        spec.document["endpoint_req_config"]
        == parse_model_item(example_item("openai-sse")).document["endpoint_req_config"]
    )


def test_two_writers_never_both_apply_a_step(stack: Stack) -> None:
    """A step written from a stale read fails its condition: exactly one of two racing runners applies."""
    registry = DynamoRegistry(stack.reg.ddb, TABLE)
    typed = registry.get(MODEL)
    assert typed is not None
    state = stack.state()
    moved = state.with_event(stack.now, "advanced", step=1)
    write_state(registry, MODEL, typed, moved, stack.now)
    with pytest.raises(ConcurrentChangeError):
        write_state(registry, MODEL, typed, moved.with_event(stack.now, "advanced", step=2), stack.now)
    assert stack.state().weight == 25.0


def test_pause_resume_abort(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.traffic(CAND, 100)
    assert ctl("pause") == 0
    assert stack.state().status == PAUSED
    stack.now += 2 * BAKE
    assert stack.tick().action == "nothing"
    assert ctl("pause") == 1
    assert "only a running rollout can be paused" in capsys.readouterr().err
    assert ctl("resume") == 0
    assert stack.state().status == RUNNING
    assert ctl("abort") == 0
    assert (stack.state().status, stack.state().weight) == (ABORTED, 0.0)
    assert weights(stack.published())[CAND] == 0.0
    assert ctl("abort") == 1


def test_status_shows_state_counts_and_the_next_tick(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    metrics = DynamoOutcomeStore("sagemaker-fastchat-rollout-metrics", stack.reg.ddb)  # what the CLI reads
    minute = int(stack.now // 60)
    metrics.add([OutcomeCounts(MODEL, CAND, minute, 7, 1, {bucket_of(90): 6})])
    capsys.readouterr()
    assert ctl("status", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["weight"] == 5.0
    assert doc["rollout"]["status"] == RUNNING
    assert doc["since_step_started"][CAND]["requests"] == 7
    state = stack.state()
    assert doc["counts_since"]["epoch"] == minute * 60 <= state.step_started_at
    assert doc["rollout"]["min_ttft_p95_delta_ms"] == 50.0
    assert doc["next_tick"]["action"] == "hold"
    assert ctl("status") == 0
    out = capsys.readouterr().out
    assert f"rollout to {CAND} (baseline {LIVE}): running, step 1 of 4, candidate weight 5%" in out
    assert f"{CAND}: 7 requests, 1 errors (14.3%)" in out
    assert "next tick: hold: baking at 5%" in out
    assert f"counts {since(state)}: every whole minute from " in out
    assert "max TTFT p95 ratio 1.5x when at least 50 ms slower" in out
    assert " started (5%)" in out


def test_models_list_shows_variants_and_the_rollout(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.published()
    capsys.readouterr()
    assert (
        main(
            [
                "models",
                "--table",
                TABLE,
                "--ssm-prefix",
                PREFIX,
                "list",
                "--json",
                "--worker-url",
                "http://127.0.0.1:1",
            ]
        )
        == 0
    )
    (row,) = json.loads(capsys.readouterr().out)["models"]
    assert row["weights"] == [{"endpoint": LIVE, "weight": 95.0}, {"endpoint": CAND, "weight": 5.0}]
    assert row["rollout"] == f"running: {CAND} at 5% (step 1 of 4)"
    assert (
        main(
            ["models", "--table", TABLE, "--ssm-prefix", PREFIX, "list", "--worker-url", "http://127.0.0.1:1"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert f"weights: {LIVE} 95%, {CAND} 5%" in out
    assert f"rollout: running: {CAND} at 5% (step 1 of 4)" in out


REFUSED = [
    (["--endpoint", CAND], "is running"),
    (["--endpoint", LIVE], "already the model's live endpoint"),
    (["--endpoint", "bad name!"], "--endpoint: 'bad name!' is not a SageMaker endpoint name"),
    (["--endpoint", ""], "--endpoint: '' is not a SageMaker endpoint name"),
    (["--endpoint", "x", "--steps", "50,25,100"], "--steps: steps must increase"),
    (["--endpoint", "x", "--steps", "5,150"], "--steps: each step is a weight above 0 and at most 100"),
    (["--endpoint", "x", "--steps", ",".join(map(str, range(1, 101)))], "--steps: needs 1 to 10 steps"),
    (["--endpoint", "x", "--steps", "nan,100"], "--steps: each step is a weight above 0"),
    (["--endpoint", "x", "--bake=-5m"], "--bake: must be 0 to 604800 seconds"),
    (["--endpoint", "x", "--bake", "inf"], "--bake: must be 0 to 604800 seconds"),
    (["--endpoint", "x", "--config", "/dev/null"], "/dev/null: not JSON"),
    (["--endpoint", "x", "--config", "/dev/zero"], "/dev/zero: larger than 1,048,576 bytes"),
    (["--endpoint", "x", "--steps", "5,50"], "--steps: the last step must be 100"),
    (["--endpoint", "x", "--steps", "a,b"], "--steps: 'a,b' is not a comma-separated list"),
    (["--endpoint", "x", "--bake", "soon"], "--bake: 'soon' is not a duration"),
    (["--endpoint", "x", "--bake", "9999d"], "--bake: must be 0 to 604800 seconds"),
    (["--endpoint", "x", "--max-error-rate", "nan"], "--max-error-rate: must be a fraction"),
    (["--endpoint", "x", "--max-ttft-p95-ratio", "0.5"], "--max-ttft-p95-ratio: must be a number from 1"),
    (["--endpoint", "x", "--min-requests", "0"], "--min-requests: must be a whole number"),
    (["--endpoint", "x", "--min-ttft-p95-delta-ms", "-1"], "--min-ttft-p95-delta-ms: must be 0 to 120000"),
    (["--endpoint", "x", "--min-ttft-p95-delta-ms", "nan"], "--min-ttft-p95-delta-ms: must be 0 to"),
    (["--endpoint", "x", "--config", "/nonexistent.json"], "cannot read"),
]


@pytest.mark.parametrize(("args", "words"), REFUSED)
def test_refused_starts_are_one_line_each_and_exit_1(
    stack: Stack, capsys: pytest.CaptureFixture[str], args: list[str], words: str
) -> None:
    if words != "is running":
        assert ctl("abort") == 0
    capsys.readouterr()
    before = stack.item()
    assert rollout(*args) == 1
    err = capsys.readouterr().err
    assert words in err, err
    assert stack.item() == before


def test_a_model_with_other_live_variants_is_refused(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ctl("abort") == 0
    registry_ops.put_model(
        registry_ops.Registry(DynamoRegistry(stack.reg.ddb, TABLE)),
        {**example_item("tgi"), "variants": [{"endpoint_name": "other", "weight": 10}]},
        active=True,
    )
    capsys.readouterr()
    assert rollout("--endpoint", CAND) == 1
    assert "other variants still take traffic (other)" in capsys.readouterr().err


def test_unknown_model_and_missing_rollout(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rollout", "status", "nobody", "--table", TABLE]) == 1
    assert "nobody: no such model" in capsys.readouterr().err
    registry_ops.put_model(
        registry_ops.Registry(DynamoRegistry(stack.reg.ddb, TABLE)), example_item("tgi"), active=True
    )
    assert ctl("status") == 1
    assert "has no rollout" in capsys.readouterr().err


def test_a_candidate_removed_by_hand_stops_the_rollout(stack: Stack) -> None:
    """Someone edits `variants` away mid-rollout: the next step stops the rollout with the reason."""
    registry = DynamoRegistry(stack.reg.ddb, TABLE)
    typed = registry.get(MODEL)
    assert typed is not None
    update_item(registry, MODEL, typed["rollout"], {"variants": None})
    stack.traffic(CAND, 100)
    stack.now += BAKE
    result = stack.tick()
    assert result.action == "stopped"
    state = stack.state()
    assert state.status == ABORTED
    assert "not among the model's variants" in state.reason


def test_outcomes_unavailable_holds(stack: Stack) -> None:
    stack.outcomes.available = False
    stack.now += BAKE
    assert stack.tick().action == "unavailable"
    assert stack.state().weight == 5.0


def test_the_lambda_handler_runs_one_tick(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduled Lambda: names from the environment, the DynamoDB outcome store, one tick."""
    monkeypatch.setenv("REGISTRY_TABLE", TABLE)
    monkeypatch.setenv("ROLLOUT_METRICS_TABLE", "sagemaker-fastchat-rollout-metrics")
    monkeypatch.setattr(rollout_step, "_runner", None)
    out = rollout_step.lambda_handler({"source": "aws.events"}, None)
    assert [(r["model"], r["action"]) for r in out["results"]] == [(MODEL, "hold")]


def test_rollout_step_command_runs_one_tick(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["rollout", "step", "--table", TABLE]) == 0
    assert capsys.readouterr().out.startswith(f"{MODEL}: hold (5%): baking at 5%: ")
    assert main(["rollout", "step", "--table", TABLE, "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert (result["model"], result["action"], result["weight"]) == (MODEL, "hold", 5.0)


def test_the_timer_ticks_until_stopped(stack: Stack) -> None:
    """`rollout run`'s loop: one tick per interval, a failing tick logged and survived, stopped on request."""
    stop = threading.Event()
    calls = []

    def tick() -> list[rollout_step.StepResult]:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("registry unreachable for a moment")
        if len(calls) == 3:
            stop.set()
        return []

    stack.runner.tick = tick  # type: ignore[method-assign]
    assert list(rollout_step.run_every(stack.runner, 0.01, stop)) == [[], []]
    assert len(calls) == 3


def test_models_put_writes_variants_as_the_spec_reads_them(stack: Stack, tmp_path: Path) -> None:
    """A whole item with `variants` given to `models put` is stored (a JSON string) and published."""
    item = {**example_item("tgi"), "variants": [{"endpoint_name": "demo-tgi-b", "weight": 30}]}
    path = tmp_path / "item.json"
    path.write_text(json.dumps(item))
    assert (
        main(
            [
                "models",
                "--table",
                TABLE,
                "--ssm-prefix",
                PREFIX,
                "put",
                MODEL,
                "--endpoint",
                LIVE,
                "--config",
                str(path),
            ]
        )
        == 0
    )
    assert isinstance(stack.item()["variants"], str)
    assert weights(stack.published()) == {LIVE: 70.0, "demo-tgi-b": 30.0}


def test_a_rollout_of_an_unlisted_model_warns(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    registry_ops.put_model(
        registry_ops.Registry(DynamoRegistry(stack.reg.ddb, TABLE)),
        {**example_item("tgi"), "model_name": "quiet"},
        active=False,
    )
    capsys.readouterr()
    assert main(["models", "--table", TABLE, "rollout", "quiet", "--endpoint", CAND]) == 0
    assert "quiet is not listed in all-models" in capsys.readouterr().err
    assert [r.model for r in stack.runner.tick()] == [MODEL]


@pytest.mark.parametrize("interval", ["0", "-1", "nan", "inf", "soon"])
def test_the_timer_refuses_an_interval_that_would_spin_or_never_tick(
    interval: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["rollout", "run", f"--interval={interval}"])
    assert exited.value.code == 2
    assert "argument --interval" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "'': not a model name: must not be empty"),
        ("x" * 5000, "is 5000 characters long"),
        ("all-models", "reserved for the list of active models"),
        ("a\x00b", "must hold printable characters only"),
    ],
)
def test_a_name_that_cannot_be_a_model_is_one_clear_line(
    stack: Stack, capsys: pytest.CaptureFixture[str], name: str, words: str
) -> None:
    """Checked before the registry sees it (DynamoDB's own refusal of an empty key is no message for an
    operator), for the start and every control command alike."""
    capsys.readouterr()
    for argv in (
        ["models", "--table", TABLE, "rollout", name, "--endpoint", CAND],
        ["rollout", "status", name, "--table", TABLE],
        ["rollout", "pause", name, "--table", TABLE],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert words in err, err
        assert len(err.strip().splitlines()) == 1
        assert len(err) < 400


def test_every_control_in_the_wrong_state_is_one_line_and_exit_1(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert ctl("resume") == 1  # running: nothing to resume
    assert (
        capsys.readouterr().err.strip()
        == f"error: {MODEL}: only a paused rollout can be resumed; this one is running"
    )
    assert ctl("abort") == 0
    before = stack.item()
    for action in ("pause", "resume", "abort"):
        capsys.readouterr()
        assert ctl(action) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1
        assert err.endswith("this one is aborted"), err
    assert stack.item() == before  # nothing written


def test_the_ttft_floor_is_a_plan_setting(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    """`--min-ttft-p95-delta-ms` is stored with the other thresholds and shown on start."""
    assert ctl("abort") == 0
    capsys.readouterr()
    assert rollout("--endpoint", "demo-tgi-v3", "--min-ttft-p95-delta-ms", "200") == 0
    assert "max TTFT p95 ratio 1.5x when at least 200 ms slower" in capsys.readouterr().out
    assert stack.state().min_ttft_p95_delta_ms == 200.0


def start_fresh(stack: Stack) -> None:
    """End the fixture's rollout so a new one may start."""
    assert ctl("abort") == 0
    stack.reg.deliver()


def test_a_candidate_that_does_not_exist_is_refused_before_anything_is_written(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """DescribeEndpoint (moto here, the stand-in locally) before the write: exit 1, one clear line."""
    start_fresh(stack)
    before = stack.item()
    capsys.readouterr()
    assert rollout("--endpoint", "demo-tgi-nowhere") == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {MODEL}: endpoint demo-tgi-nowhere does not exist (")
    assert "nothing written" in err
    assert "--no-endpoint-check" in err
    assert stack.item() == before


def test_a_candidate_not_in_service_is_refused_and_a_failed_check_warns(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    start_fresh(stack)
    fake = FakeEndpointChecker({"demo-tgi-new": "Creating", "demo-tgi-hidden": "!AccessDeniedException"})
    monkeypatch.setattr(rollout_cli, "endpoint_checker", lambda: fake)
    capsys.readouterr()
    assert rollout("--endpoint", "demo-tgi-new") == 1
    assert f"error: {MODEL}: endpoint demo-tgi-new is Creating, not InService; nothing written" in (
        capsys.readouterr().err
    )
    assert stack.state().status == ABORTED  # the old rollout, untouched
    assert rollout("--endpoint", "demo-tgi-hidden") == 0  # cannot check: no verdict, the workers check
    assert "warning: demo-tgi: cannot check endpoint demo-tgi-hidden" in capsys.readouterr().err
    assert stack.state().candidate == "demo-tgi-hidden"
    assert fake.calls == ["demo-tgi-new", "demo-tgi-hidden"]


def test_no_endpoint_check_skips_it_and_the_sync_check_keeps_the_last_good_spec(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--no-endpoint-check` writes a candidate that does not exist; the sync's own check
    (SYNC_ENDPOINT_CHECK) then rejects that spec, the last good one stays published (the candidate gets
    nothing), and `rollout status` says why."""
    start_fresh(stack)
    stack.reg.handler.checker = FakeEndpointChecker({LIVE: "InService", CAND: "InService"})
    assert rollout("--endpoint", "demo-tgi-nowhere", "--no-endpoint-check") == 0
    assert stack.state().candidate == "demo-tgi-nowhere"
    assert "demo-tgi-nowhere" not in weights(stack.published())
    capsys.readouterr()
    assert ctl("status", "--ssm-prefix", PREFIX, "--json") == 0
    reason = f"{MODEL}: variants[0].endpoint_name: endpoint demo-tgi-nowhere does not exist"
    assert json.loads(capsys.readouterr().out)["not_published"].startswith(reason)
    assert ctl("status", "--ssm-prefix", PREFIX) == 0
    assert f"  not published: {reason}" in capsys.readouterr().out
    assert ctl("status", "--ssm-prefix", "/elsewhere") == 0  # nothing published there: no such line
    assert "  not published:" not in capsys.readouterr().out
    monkeypatch.setenv("ROLLOUT_ENDPOINT_CHECK", "false")
    assert ctl("abort") == 0
    assert rollout("--endpoint", "demo-tgi-elsewhere") == 0  # the variable turns the check off too


def test_status_without_the_published_set_warns_and_shows_the_rest(
    stack: Stack, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Unreadable:
        def __init__(self, *_: Any) -> None:
            pass

        def load_manifest(self) -> None:
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}}, "GetParameter")

    monkeypatch.setattr(rollout_cli, "SnapshotReader", Unreadable)
    capsys.readouterr()
    assert ctl("status") == 0
    out, err = capsys.readouterr()
    assert "warning: the published model set cannot be read: " in err
    assert "running, step 1 of 4" in out


def test_a_step_the_sync_refused_holds_with_the_reason_and_advances_once_published(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    """Step 2 (25%) is written, but the sync's endpoint check refuses it (the candidate is Creating):
    workers keep serving 5%, so however healthy the counts at 5% and however long it waits, the runner
    holds with the sync's reason, and `rollout status` says so. Once the step is published (the endpoint
    InService; pause and resume write the item again), its bake starts then and it advances after it."""
    stack.reg.handler.checker = FakeEndpointChecker({LIVE: "InService", CAND: "InService"})
    stack.now += BAKE
    stack.traffic(LIVE, 400)
    stack.traffic(CAND, 100)
    assert stack.tick().action == "advance"
    assert stack.state().weight == 25.0
    stack.reg.handler.checker = FakeEndpointChecker({LIVE: "InService", CAND: "Creating"})
    refusal = f"{MODEL}: variants[0].endpoint_name: endpoint {CAND} is Creating, not InService"
    before = stack.item()
    for _ in range(3):
        stack.now += BAKE
        stack.traffic(LIVE, 400)
        stack.traffic(CAND, 100)
        result = stack.tick()
        assert (result.action, result.weight) == ("hold", 25.0)
        assert result.reason.startswith(f"step 2 (25%) is not published yet: {refusal}"), result.reason
    assert weights(stack.published()) == {LIVE: 95.0, CAND: 5.0}  # what workers serve
    assert stack.item() == before  # nothing written while held
    capsys.readouterr()
    assert ctl("status", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["weight"], doc["published_weight"]) == (25.0, 5.0)
    assert doc["not_published"].startswith(refusal)
    assert doc["next_tick"]["reason"].startswith("step 2 (25%) is not published yet: ")

    stack.reg.handler.checker = FakeEndpointChecker({LIVE: "InService", CAND: "InService"})
    assert ctl("pause") == 0
    assert ctl("resume") == 0
    result = stack.tick()
    assert result.action == "hold"
    assert result.reason.startswith(f"baking at 25%: {BAKE} s left; ")
    assert weights(stack.published()) == {LIVE: 75.0, CAND: 25.0}
    assert stack.state().step_live_at == stack.now
    stack.now += BAKE - 1
    stack.traffic(CAND, 100)
    assert stack.tick().action == "hold"  # the bake counts from publication, not from the write
    stack.now += 1
    result = stack.tick()
    assert (result.action, result.weight) == ("advance", 50.0)


def test_the_runner_holds_when_the_published_set_cannot_be_read(stack: Stack) -> None:
    """Never advance blind: an SSM failure holds with the reason; a breach still rolls back."""
    unreadable = InMemoryParameters()
    unreadable.fail("get")  # as boto3 raises for a server fault
    stack.runner.published = SnapshotReader(unreadable, PREFIX)
    stack.now += BAKE
    stack.traffic(CAND, 100)
    result = stack.tick(deliver=False)
    assert result.action == "hold"
    assert result.reason.startswith(
        "step 1 (5%) is not published yet: the published model set cannot be read"
    )
    stack.traffic(CAND, 100, errors=100)
    assert stack.tick(deliver=False).action == "rollback"
