"""The sync Lambda on moto: real DynamoDB stream records in, SSM state asserted."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from structlog.testing import capture_logs

from contract.snapshot import encode_model_name, manifest_name
from stores.registry import DynamoRegistry, create_table
from stores.ssm import ParameterStore, SnapshotWriter, SsmParameters
from stores.testing import InMemoryParameters
from sync.handler import SyncHandler
from sync.publisher import prune, publish, specs_at
from sync.settings import SyncSettings
from sync.stream_consumer import StreamConsumer
from tests.helpers import example_item

TABLE = "sagemaker-fastchat-models"
PREFIX = "/sagemaker-fastchat"


class Registry:
    """A moto DynamoDB table with a stream, SSM (moto's, or the given parameter store, e.g. a fake told
    to fail), the real handler, and the stream consumer feeding it."""

    def __init__(self, parameters: ParameterStore | None = None) -> None:
        self.ddb = boto3.client("dynamodb", region_name="us-east-1")
        self.streams = boto3.client("dynamodbstreams", region_name="us-east-1")
        self.ssm = boto3.client("ssm", region_name="us-east-1")
        create_table(self.ddb, TABLE)
        self.settings = SyncSettings(table_name=TABLE, ssm_prefix=PREFIX)
        self.reader = SnapshotWriter(parameters or SsmParameters(self.ssm), PREFIX)
        self.handler = SyncHandler(
            DynamoRegistry(self.ddb, TABLE), SnapshotWriter(self.reader.store, PREFIX), self.settings
        )
        self.now = 0.0  # the consumer's clock: tests move it past a retry delay
        self.consumer = StreamConsumer(self.ddb, self.streams, TABLE, self.handler, clock=lambda: self.now)

    def put_model(self, name: str, example: str = "tgi", **changes: Any) -> None:
        item = {**example_item(example), "model_name": name, **changes}
        typed = {
            k: {"S": v if isinstance(v, str) else json.dumps(v)}
            for k, v in item.items()
            if k != "context_length"
        }
        self.ddb.put_item(TableName=TABLE, Item=typed)

    def put_raw(self, item: dict[str, Any]) -> None:
        self.ddb.put_item(TableName=TABLE, Item=item)

    def set_active(self, names: str) -> None:
        self.put_raw({"model_name": {"S": "all-models"}, "model_names": {"S": names}})

    def delete(self, name: str) -> None:
        self.ddb.delete_item(TableName=TABLE, Key={"model_name": {"S": name}})

    def deliver(self) -> int:
        """Hand the real stream records moto produced to the handler, as the event source mapping would."""
        return self.consumer.poll_once()

    def manifest(self) -> Any:
        return self.reader.load_manifest()

    def version(self) -> int | None:
        return self.reader.manifest_version()

    def param_version(self, name: str) -> int:
        got = self.reader.get(f"{PREFIX}/models/{encode_model_name(name)}")
        assert got is not None
        return got[1]

    def records(self) -> list[dict[str, Any]]:
        """Every record currently in the stream (for replay tests)."""
        arn = self.consumer.stream_arn()
        out = []
        for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            it = self.streams.get_shard_iterator(
                StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            out.extend(self.streams.get_records(ShardIterator=it, Limit=1000)["Records"])
        return [{**r, "eventSourceARN": arn} for r in out]


@pytest.fixture
def reg() -> Iterator[Registry]:
    with mock_aws():
        yield Registry()


@pytest.fixture
def faulty() -> Iterator[tuple[Registry, InMemoryParameters]]:
    """The registry on moto, SSM in memory (tests/integration/test_store_contracts.py proves it faithful)
    so that tests can make its calls fail."""
    parameters = InMemoryParameters()
    with mock_aws():
        yield Registry(parameters), parameters


def test_publish_put_and_manifest_shape(reg: Registry) -> None:
    """Two valid models listed -> one parameter each, then a manifest in display order."""
    reg.put_model("Llama 2 (70B)")
    reg.put_model("lmi", "lmi-jsonlines")
    reg.set_active("lmi, Llama 2 (70B)")
    assert reg.deliver() == 3
    published = reg.manifest()
    assert published.version == 1
    assert published.manifest.names == ("lmi", "Llama 2 (70B)")
    entry = published.manifest.entry("Llama 2 (70B)")
    assert entry.parameter == "models/Llama_202_20_2870B_29"
    spec = reg.reader.load_spec(entry.parameter, entry.version, entry.hash, entry.name)
    assert spec.endpoint_name == "demo-tgi"
    assert published.manifest.rejected == {}


def test_unchanged_set_writes_nothing(reg: Registry) -> None:
    """Re-writing identical items, or replaying, makes no new version and no SSM write."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    writes = reg.handler.store.writes
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    assert reg.version() == 1
    assert reg.handler.store.writes == writes


def test_update_rewrites_only_the_changed_model(reg: Registry) -> None:
    """Changing one model writes its parameter and the manifest; the others keep their versions."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    reg.deliver()
    b_version = reg.param_version("b")
    writes = reg.handler.store.writes
    reg.put_model("a", endpoint_name="demo-tgi-2")
    reg.deliver()
    assert reg.handler.store.writes - writes == 2
    assert reg.param_version("b") == b_version
    assert reg.param_version("a") == 2
    assert reg.version() == 2


def test_invalid_update_keeps_last_good_spec_live(reg: Registry) -> None:
    """An invalid write is rejected with the reason; the model's previous spec stays in the set."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    reg.deliver()
    before = reg.manifest().manifest.entry("a")
    reg.put_raw(
        {
            "model_name": {"S": "a"},
            "endpoint_name": {"S": "demo-tgi"},
            "endpoint_req_config": {"S": "{broken"},
        }
    )
    reg.deliver()
    after = reg.manifest()
    assert after.version == 2  # a rejection alone publishes a new version operators can see
    assert after.manifest.entry("a") == before
    assert "a: endpoint_req_config: is not valid JSON" in after.manifest.rejected["a"]
    assert after.manifest.names == ("a", "b")


def _config_with(change: Any) -> dict[str, Any]:
    config = example_item("tgi")["endpoint_req_config"]
    change(config)
    return {"endpoint_req_config": config}


HOSTILE = {
    "1,200-step path": (
        _config_with(lambda c: c["response"]["mapping"].update(text="$" + ".a" * 1200)),
        "endpoint_req_config.response.mapping.text: is 2401 characters long",
    ),
    "60-step path": (
        _config_with(lambda c: c["request"]["mapping"].update(seed="$" + ".a" * 60)),
        "endpoint_req_config.request.mapping.seed: has 60 steps",
    ),
    "regex RE2 cannot run": (
        _config_with(lambda c: c["response"].update(regex_sub="^(data):\\1")),
        "endpoint_req_config.response.regex_sub: '^(data):\\\\1' cannot be run by RE2",
    ),
    "unknown conv_template": ({"conv_template": "no-such-template"}, "conv_template: 'no-such-template'"),
    "endpoint name over 63": ({"endpoint_name": "a" + "-" * 70 + "b"}, "endpoint_name:"),
}


@pytest.mark.parametrize("hostile", sorted(HOSTILE))
def test_hostile_writes_are_published_rejections(reg: Registry, hostile: str) -> None:
    """Each hostile write is a published rejection naming field and why; the other model is untouched
    and the last good spec stays live (nothing raises in the sync, nothing is retried forever)."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    reg.deliver()
    before = reg.manifest().manifest
    changes, words = HOSTILE[hostile]
    reg.put_model("a", **changes)
    reg.deliver()
    after = reg.manifest().manifest
    assert words in after.rejected["a"]
    assert after.entry("a") == before.entry("a")
    assert after.entry("b") == before.entry("b")


def test_invalid_new_model_is_not_served(reg: Registry) -> None:
    """A new model that never validated is only listed as rejected."""
    reg.put_model("a")
    reg.put_model("new", endpoint_name="bad name")
    reg.set_active("a,new")
    reg.deliver()
    manifest = reg.manifest().manifest
    assert manifest.names == ("a",)
    assert "endpoint_name" in manifest.rejected["new"]


def test_fixing_a_rejected_model_clears_the_rejection(reg: Registry) -> None:
    """Writing a valid item again publishes it and removes the rejection."""
    reg.put_model("a", endpoint_name="bad name")
    reg.set_active("a")
    reg.deliver()
    assert "a" in reg.manifest().manifest.rejected
    reg.put_model("a")
    reg.deliver()
    manifest = reg.manifest().manifest
    assert manifest.names == ("a",)
    assert manifest.rejected == {}


def test_unlisting_removes_but_keeps_the_parameter(reg: Registry) -> None:
    """Removing a model from all-models drops it from the set; its parameter stays for rollback."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    reg.deliver()
    reg.set_active("b")
    reg.delete("a")
    reg.deliver()
    assert reg.manifest().manifest.names == ("b",)
    assert reg.param_version("a") == 1


def test_deleted_item_still_listed_is_rejected_and_kept(reg: Registry) -> None:
    """Deleting an item without unlisting it is a rejection: the last good spec stays live."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.delete("a")
    reg.deliver()
    manifest = reg.manifest().manifest
    assert manifest.names == ("a",)
    assert "no item" in manifest.rejected["a"]


def test_the_syncs_documented_log_events(reg: Registry) -> None:
    """README "Observability": `model_set_not_published` (error, with the reason), `model_set_published`,
    `model_set_unchanged` (info, with the result), `model_rejected` (warning, per rejected model)."""
    reg.put_model("a")
    with capture_logs() as logs:
        reg.handler.sync()  # no all-models item yet
    (line,) = [e for e in logs if e["event"] == "model_set_not_published"]
    assert line["log_level"] == "error"
    assert "'all-models' item is missing" in line["reason"]
    assert line["table"] == TABLE
    reg.set_active("a,b")
    reg.put_model("b", endpoint_name="bad name")
    with capture_logs() as logs:
        reg.handler.sync()
        reg.handler.sync()
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("model_set_published", "info"),
        ("model_rejected", "warning"),
        ("model_set_unchanged", "info"),
        ("model_rejected", "warning"),
    ]
    assert (logs[0]["version"], logs[0]["added"], logs[0]["published"]) == (2, ["a"], True)
    assert (logs[1]["model"], logs[1]["version"]) == ("b", 2)
    assert "endpoint_name" in logs[1]["reason"]
    assert (logs[2]["version"], logs[2]["published"]) == (2, False)


def test_missing_all_models_is_reported_not_published(reg: Registry) -> None:
    """Without all-models nothing new is served: the reason is published (once), the batch succeeds."""
    reg.put_model("a")
    assert reg.deliver() == 1
    first = reg.manifest()
    assert first.version == 1
    assert first.manifest.names == ()
    assert "'all-models' item is missing" in first.manifest.not_published
    reg.set_active("a")
    reg.deliver()
    assert reg.version() == 2
    assert reg.manifest().manifest.not_published == ""
    reg.delete("all-models")
    assert reg.deliver() == 1
    published = reg.manifest()
    assert published.version == 3
    assert published.manifest.names == ("a",)  # the live set stays
    assert "missing" in published.manifest.not_published
    reg.put_model("a", description="x")  # the same reason again: nothing more is written
    assert reg.deliver() == 1
    assert reg.version() == 3


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ({"N": "5"}, "not int"),
        ({"L": [{"S": "a"}]}, "not list"),
        ({"SS": ["a", "b"]}, "not list"),
        ({"BOOL": True}, "not bool"),
    ],
)
def test_unreadable_all_models_is_reported_not_published(reg: Registry, value: Any, why: str) -> None:
    """A model_names that is not a string keeps the live set and says why; fixing it publishes."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.put_raw({"model_name": {"S": "all-models"}, "model_names": value})
    assert reg.deliver() == 1
    published = reg.manifest()
    assert published.version == 2
    assert published.manifest.names == ("a",)
    assert "model_names must be a comma-separated string" in published.manifest.not_published
    assert why in published.manifest.not_published
    reg.set_active("a")
    reg.deliver()
    assert reg.version() == 3
    assert reg.manifest().manifest.not_published == ""


def test_all_models_without_model_names_is_reported(reg: Registry) -> None:
    """An all-models item with no model_names attribute is reported, not retried."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.put_raw({"model_name": {"S": "all-models"}})
    assert reg.deliver() == 1
    assert "model_names is missing" in reg.manifest().manifest.not_published


def test_ten_thousand_names_are_reported_not_published(reg: Registry) -> None:
    """A list longer than a manifest can hold is refused as a whole: the live set stays, the reason shows."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.set_active(",".join(f"m{i}" for i in range(10_000)))
    assert reg.deliver() == 1
    published = reg.manifest()
    assert published.manifest.names == ("a",)
    assert "lists 10000 models; the limit is 1000" in published.manifest.not_published


def test_a_300kb_name_is_a_warning_and_the_rest_publishes(reg: Registry) -> None:
    """One huge name is ignored with a bounded warning; the other models still publish."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a," + "x" * 300_000 + ",b")
    assert reg.deliver() == 3
    manifest = reg.manifest().manifest
    assert manifest.names == ("a", "b")
    assert manifest.not_published == ""
    assert any("300000 characters" in w for w in manifest.warnings)


def test_a_manifest_too_big_for_ssm_is_reported_not_published(reg: Registry) -> None:
    """1,000 listed non-ASCII names without items: their rejections exceed 32 pages of 8 KB, so the live
    set stays and the manifest says why; the batch is not failed (retrying cannot help)."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.set_active(",".join(f"{i:04d}" + "\u00e9" * 60 for i in range(1000)))
    records = reg.records()[-1:]
    assert reg.handler({"Records": records}, None) == {"batchItemFailures": []}
    published = reg.manifest()
    assert published.manifest.names == ("a",)
    assert "manifest pages of 8 KB; the limit is 32" in published.manifest.not_published


def test_an_unforeseen_error_is_reported_not_retried(reg: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error that is not AWS's (a validator bug) is reported with its type; the batch succeeds."""
    import sync.handler

    def broken(items: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    monkeypatch.setattr(sync.handler, "evaluate_registry", broken)
    reg.put_model("a", description="x")
    assert reg.deliver() == 1
    assert "RecursionError: maximum recursion depth exceeded" in reg.manifest().manifest.not_published


def test_empty_list_publishes_an_empty_set(reg: Registry) -> None:
    """An explicitly empty model_names removes the last model on purpose."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.set_active("")
    reg.deliver()
    published = reg.manifest()
    assert published.version == 2
    assert published.manifest.names == ()


def test_duplicates_are_warned_in_the_manifest(reg: Registry) -> None:
    """A repeated name counts once and the warning is published."""
    reg.put_model("a")
    reg.set_active("a, a")
    reg.deliver()
    manifest = reg.manifest().manifest
    assert manifest.names == ("a",)
    assert any("more than once" in w for w in manifest.warnings)


def test_ssm_failure_midway_is_not_a_partial_publish_and_retry_converges(
    faulty: tuple[Registry, InMemoryParameters],
) -> None:
    """A fault after the first model parameter: the manifest does not move, the batch fails and is retried."""
    reg, ssm = faulty
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    puts = ssm.calls["put"]
    ssm.fail("put", nth=2)
    reg.put_model("a", endpoint_name="demo-tgi-2")
    reg.put_model("b")
    reg.set_active("a,b")
    assert reg.deliver() == 0  # the batch was reported failed
    assert reg.version() == 1
    assert reg.manifest().manifest.names == ("a",)
    assert reg.deliver() == 0  # not redelivered before its retry delay
    reg.now += 60
    assert reg.deliver() == 3  # redelivered; SSM works again
    manifest = reg.manifest().manifest
    assert manifest.names == ("a", "b")
    assert reg.param_version("a") == 2  # written once, reused on retry (not rewritten)
    # a (ok), b (injected fault); retry: b, manifest. a is reused, not rewritten
    assert ssm.calls["put"] - puts == 4
    assert reg.version() == 2


def test_failed_batches_back_off(faulty: tuple[Registry, InMemoryParameters]) -> None:
    """While SSM keeps failing, each redelivery waits twice as long as the one before, up to a cap."""
    from sync.stream_consumer import RETRY_BASE, RETRY_MAX

    reg, ssm = faulty
    reg.put_model("a")
    reg.set_active("a")
    ssm.fail("put")
    reg.deliver()
    delays = []
    for _ in range(8):
        calls, waited = ssm.calls["put"], 0.0
        while ssm.calls["put"] == calls:
            reg.now += RETRY_BASE
            waited += RETRY_BASE
            reg.deliver()
        delays.append(waited)
    assert delays[:4] == [RETRY_BASE, RETRY_BASE * 2, RETRY_BASE * 4, RETRY_BASE * 8]
    assert delays[-1] == RETRY_MAX


def test_handler_reports_first_record_as_failed(faulty: tuple[Registry, InMemoryParameters]) -> None:
    """With ReportBatchItemFailures the first record's sequence number is returned on failure."""
    reg, ssm = faulty
    reg.put_model("a")
    reg.set_active("a")
    records = reg.records()
    ssm.fail("put", nth=1)
    result = reg.handler({"Records": records}, None)
    assert result == {"batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]}


def test_shuffled_duplicated_replays_converge(reg: Registry) -> None:
    """Replaying the stream's real records in shuffled, duplicated batches gives the same state."""
    reg.put_model("a")
    reg.put_model("b", "lmi-jsonlines")
    reg.set_active("a,b")
    reg.put_model("a", endpoint_name="demo-tgi-3")
    reg.put_model("c", endpoint_name="bad name")
    reg.set_active("b,a,c")
    records = reg.records()
    rng = random.Random(7)
    states = []
    for _ in range(4):
        batch = records * 2
        rng.shuffle(batch)
        for i in range(0, len(batch), 3):
            assert reg.handler({"Records": batch[i : i + 3]}, None) == {"batchItemFailures": []}
        published = reg.manifest()
        states.append((published.manifest.body(), published.version))
    assert all(s[0] == states[0][0] for s in states)
    assert states[0][0]["models"][0][0] == "b"
    assert {s[1] for s in states} == {1}  # converged on the first replay; later ones wrote nothing


def test_interleaved_publishers_rebuild(reg: Registry) -> None:
    """Two handlers interleaved: the one whose read went stale rebuilds instead of overwriting."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    other = SyncHandler.from_clients(reg.ddb, reg.ssm, reg.settings)
    store = reg.handler.store
    original = store.manifest_version
    calls = {"n": 0}

    def racing_version() -> int | None:
        calls["n"] += 1
        if calls["n"] == 1:  # between our read and our write, another publisher lands
            reg.put_model("b")
            reg.set_active("a,b")
            other.sync()
        return original()

    store.manifest_version = racing_version  # type: ignore[method-assign]
    reg.put_model("a", endpoint_name="demo-tgi-5")
    result = reg.handler.sync()
    assert result is not None
    assert reg.handler.attempts == 2
    manifest = reg.manifest()
    assert manifest.manifest.names == ("a", "b")
    # The other publisher already published the table's newest state (a changed, b added) as version 2;
    # our rebuild re-read the table, found that exact set live, and wrote nothing over it.
    assert manifest.version == 2
    assert not result.published
    assert manifest.manifest.entry("a").version == 2


def test_200_models_and_a_one_model_change(reg: Registry) -> None:
    """200 models with 64-character names publish (paged); changing one writes one parameter + manifest."""
    names = [f"{i:03d}-" + "n" * 60 for i in range(200)]
    for name in names:
        reg.put_model(name)
    reg.set_active(",".join(names))
    reg.handler.sync()
    assert reg.manifest().manifest.names == tuple(names)
    store = reg.handler.store
    writes = store.writes
    reg.put_model(names[7], endpoint_name="demo-tgi-7")
    result = reg.handler.sync()
    assert result is not None
    assert result.changed == [names[7]]
    pages = store.writes - writes - 2
    assert pages >= 1  # the manifest is paged at this size; its pages are rewritten, models are not


def test_rollback_specs_and_prune(reg: Registry) -> None:
    """A past version resolves to its exact specs; prune deletes only unreferenced parameters."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    reg.deliver()
    reg.put_model("a", endpoint_name="demo-tgi-9")
    reg.set_active("a")
    reg.deliver()
    published, specs = specs_at(reg.handler.store, 1)
    assert published.version == 1
    assert [(s.name, s.endpoint_name) for s in specs] == [("a", "demo-tgi"), ("b", "demo-tgi")]
    assert prune(reg.handler.store) == [f"{PREFIX}/models/b"]
    assert reg.manifest().manifest.names == ("a",)


def test_publish_refuses_values_over_8kb(reg: Registry) -> None:
    """The store enforces SSM's 8 KB limit that moto does not."""
    from contract.snapshot import SnapshotError

    with pytest.raises(SnapshotError, match="8192"):
        reg.handler.store.put(manifest_name(PREFIX), "x" * 9000)


def test_publish_function_directly_is_idempotent(reg: Registry) -> None:
    """publish() on the same state twice: the second call is a no-op."""
    from contract.registry import evaluate_registry

    reg.put_model("a")
    reg.set_active("a")
    state = evaluate_registry(DynamoRegistry(reg.ddb, TABLE).scan())
    first = publish(state, reg.handler.store)
    second = publish(state, reg.handler.store)
    assert first.published
    assert not second.published
    assert second.ssm_writes == 0
    assert second.version == first.version


def test_a_300_model_sync_trace_fits_udp_documents(reg: Registry) -> None:
    """A sync writing 300 models traces every SSM write in documents under the daemon's 64 KB datagram,
    and the segment still carries the totals."""
    from telemetry.collector import build_tree
    from telemetry.testing import recording_tracer, sent
    from telemetry.tracing import MAX_DOCUMENT_BYTES
    from tests.unit.test_telemetry import descendants

    tracer = reg.handler.tracer = recording_tracer("sagemaker-fastchat-sync")
    names = [f"{i:03d}-" + "n" * 60 for i in range(300)]
    for name in names:
        reg.put_model(name)
    reg.set_active(",".join(names))
    result = reg.handler.sync()
    assert result is not None
    assert len(result.added) == 300
    assert max(len(json.dumps(doc).encode()) for doc in sent(tracer)) <= MAX_DOCUMENT_BYTES
    (root,) = build_tree(sent(tracer))
    assert root["annotations"]["models_added"] == 300
    writes = [d for d in descendants(root) if d["name"] == "SSM PutParameter"]
    assert len(writes) == result.ssm_writes


def test_a_damaged_manifest_is_replaced_not_retried_forever(reg: Registry) -> None:
    """A manifest that is not JSON (hand-edited) is replaced by the next publish; the batch succeeds."""
    reg.put_model("a")
    reg.set_active("a")
    reg.deliver()
    reg.ssm.put_parameter(Name=manifest_name(PREFIX), Value="{broken", Type="String", Overwrite=True)
    reg.put_model("b")
    reg.set_active("a,b")
    assert reg.deliver() == 2
    published = reg.manifest()
    assert published.version == 3
    assert published.manifest.names == ("a", "b")
    assert reg.param_version("a") == 1  # its parameter already held the spec: reused
