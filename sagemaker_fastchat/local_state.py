"""The local stack's state on disk: moto keeps everything in memory, so the `moto` process saves it.

moto 5.2 has no persistence of its own (its recorder appends every request, reads included, to a log
that grows without bound). Instead the `moto` process of the local stack snapshots, through the public
API of the server it runs:

- every DynamoDB table (definition and items) into `dynamodb.json`, so a votes table added later is
  kept like the registry;
- every SSM parameter with its whole version history into `ssm.json`, so version numbers (the model-set
  version, `models rollback --to N`) survive a restart.

A snapshot is written about a second after a write request reached moto (each file written atomically:
a temporary file, then a rename), and once more at shutdown, so a SIGKILL loses at most the last second.
On start the snapshot is replayed before the server reports ready, i.e. before the sync and the worker
start: the sync then finds SSM already matching the table and publishes nothing new.

The folder also holds the web UI's votes spool and the X-Ray collector's traces file (`up` passes their
paths to those processes), so two stacks on one machine never replay votes into each other's tables nor
show each other's traces.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ssm import SSMClient

DYNAMODB_FILE = "dynamodb.json"
SSM_FILE = "ssm.json"
LOCK_FILE = "lock"
SNAPSHOT_FILES = (DYNAMODB_FILE, SSM_FILE)
VOTE_SPOOL_FILE = "votes-spool.jsonl"
TRACES_FILE = "traces.jsonl"
FORMAT = 1
SSM_VERSION_LIMIT = 100  # SSM (and moto) keep the last 100 versions of a parameter
READY_PATH = "/_sagemaker_fastchat/state"
# Request actions that never change state; every other action marks its service as changed.
READ_ACTION_PREFIXES = ("Get", "Describe", "List", "Scan", "Query", "BatchGet")
SERVICES = {"DynamoDB_20120810": "dynamodb", "AmazonSSM": "ssm"}


def default_state_dir(xdg_state_home: str | None) -> Path:
    """`$XDG_STATE_HOME/sagemaker-fastchat`, else ~/.local/state/sagemaker-fastchat (the shell reads the
    variable: settings.LocalStackSettings, where `--state-dir`/`$SFC_STATE_DIR` come first)."""
    base = xdg_state_home or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "sagemaker-fastchat"


def state_folder(chosen: str | None, xdg_state_home: str | None) -> Path:
    """--state-dir / $SFC_STATE_DIR when given, else the XDG default; absolute."""
    folder = Path(chosen) if chosen else default_state_dir(xdg_state_home)
    return folder.expanduser().resolve()


def spooled_votes(spool: Path) -> int:
    """Votes a spool still holds (not yet in the votes table): its non-blank lines; the recorder empties
    the file once every vote in it is stored."""
    try:
        with spool.open("rb") as f:
            return sum(1 for line in f if line.strip())
    except FileNotFoundError:
        return 0


def changed_service(target: str | None) -> str | None:
    """The service a request changes, from its `X-Amz-Target` (`AmazonSSM.PutParameter`), or None for
    reads and for services that are not snapshotted (DynamoDB Streams is read-only)."""
    prefix, _, action = (target or "").partition(".")
    service = SERVICES.get(prefix)
    if service is None or action.startswith(READ_ACTION_PREFIXES):
        return None
    return service


# --- DynamoDB ------------------------------------------------------------------------------------
def _encode(value: Any) -> Any:
    """Typed attribute values as JSON: binary (B, BS) as base64 text."""
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__b64__"}:
            return base64.b64decode(value["__b64__"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _index(index: Mapping[str, Any]) -> dict[str, Any]:
    return {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}


def table_definition(described: Mapping[str, Any]) -> dict[str, Any]:
    """`create_table` arguments that recreate a table as `describe_table` describes it."""
    definition: dict[str, Any] = {
        "TableName": described["TableName"],
        "KeySchema": described["KeySchema"],
        "AttributeDefinitions": described["AttributeDefinitions"],
    }
    mode = described.get("BillingModeSummary", {}).get("BillingMode", "PAY_PER_REQUEST")
    definition["BillingMode"] = mode
    if mode == "PROVISIONED":
        throughput = described.get("ProvisionedThroughput", {})
        definition["ProvisionedThroughput"] = {
            "ReadCapacityUnits": max(1, int(throughput.get("ReadCapacityUnits", 1))),
            "WriteCapacityUnits": max(1, int(throughput.get("WriteCapacityUnits", 1))),
        }
    stream = described.get("StreamSpecification")
    if stream and stream.get("StreamEnabled"):
        definition["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    if described.get("GlobalSecondaryIndexes"):
        definition["GlobalSecondaryIndexes"] = [_index(i) for i in described["GlobalSecondaryIndexes"]]
        if mode == "PROVISIONED":
            for index in definition["GlobalSecondaryIndexes"]:
                index["ProvisionedThroughput"] = definition["ProvisionedThroughput"]
    if described.get("LocalSecondaryIndexes"):
        definition["LocalSecondaryIndexes"] = [_index(i) for i in described["LocalSecondaryIndexes"]]
    return definition


def dump_dynamodb(client: DynamoDBClient) -> dict[str, Any]:
    """Every table of the region: its definition, its TTL setting and its items (typed values)."""
    tables = []
    for page in client.get_paginator("list_tables").paginate():
        for name in page.get("TableNames", []):
            definition = table_definition(client.describe_table(TableName=name)["Table"])
            ttl = client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            items = [
                item
                for scanned in client.get_paginator("scan").paginate(TableName=name)
                for item in scanned.get("Items", [])
            ]
            tables.append(
                {
                    "definition": definition,
                    "ttl_attribute": ttl.get("AttributeName")
                    if ttl.get("TimeToLiveStatus") == "ENABLED"
                    else None,
                    "items": _encode(items),
                }
            )
    return {"format": FORMAT, "tables": tables}


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def restore_dynamodb(client: DynamoDBClient, snapshot: dict[str, Any]) -> int:
    """Recreate the snapshot's tables (the region must not have them yet); returns the items written."""
    written = 0
    for table in snapshot.get("tables", []):
        definition = table["definition"]
        name = definition["TableName"]
        client.create_table(**definition)
        # botocore sleeps any number of seconds; the stubs say int (moto answers at once: poll fast)
        delay: Any = 0.1
        client.get_waiter("table_exists").wait(
            TableName=name, WaiterConfig={"Delay": delay, "MaxAttempts": 50}
        )
        if table.get("ttl_attribute"):
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": table["ttl_attribute"]},
            )
        items = _decode(table.get("items", []))
        for chunk in _chunks(items, 25):  # BatchWriteItem's limit
            pending: dict[str, Any] = {name: [{"PutRequest": {"Item": item}} for item in chunk]}
            while pending:
                pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
        written += len(items)
    return written


# --- SSM -----------------------------------------------------------------------------------------
VERSION_FIELDS = ("Value", "Type", "Tier", "DataType", "Description", "AllowedPattern")


class SsmHistories:
    """Every parameter's history; a parameter is fetched again only when its version moved."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[int, list[dict[str, Any]]]] = {}

    def dump(self, client: SSMClient) -> dict[str, Any]:
        current: dict[str, int] = {}
        for page in client.get_paginator("describe_parameters").paginate():
            for described in page.get("Parameters", []):
                current[described["Name"]] = int(described["Version"])
        for name, version in current.items():
            cached = self._cache.get(name)
            if cached is None or cached[0] != version:
                self._cache[name] = (version, self._history(client, name))
        for gone in set(self._cache) - set(current):
            del self._cache[gone]
        parameters = [{"name": name, "versions": self._cache[name][1]} for name in sorted(self._cache)]
        return {"format": FORMAT, "parameters": parameters}

    @staticmethod
    def _history(client: SSMClient, name: str) -> list[dict[str, Any]]:
        versions = [
            _version(v)
            for page in client.get_paginator("get_parameter_history").paginate(Name=name, WithDecryption=True)
            for v in page.get("Parameters", [])
        ]
        return sorted(versions, key=lambda v: v["Version"])


def _version(found: Mapping[str, Any]) -> dict[str, Any]:
    """One version of a parameter's history, as kept: its number and the fields a put gives it back."""
    return {
        "Version": int(found["Version"]),
        **{k: found[k] for k in VERSION_FIELDS if found.get(k) is not None},
    }


def replay_plan(versions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The writes that give a fresh parameter the same version numbers: when SSM dropped the oldest
    versions (past 100), the first kept one is written in their place too, and dropped again as the
    later ones are written, exactly as SSM did."""
    if not versions:
        return []
    first = versions[0]["Version"]
    return [versions[0]] * (first - 1) + list(versions)


def restore_ssm(client: SSMClient, snapshot: dict[str, Any]) -> int:
    """Write every parameter's versions in order (the region must not have them yet); returns the
    number of parameters restored."""
    parameters = snapshot.get("parameters", [])
    for parameter in parameters:
        for version in replay_plan(parameter["versions"]):
            fields = {k: version[k] for k in VERSION_FIELDS if k in version}
            client.put_parameter(Name=parameter["name"], Overwrite=True, **fields)
    return len(parameters)


# --- files ---------------------------------------------------------------------------------------
def write_atomic(path: Path, document: dict[str, Any]) -> None:
    """Readers (and a crash) see the old file or the new one, never half of one."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as out:
        json.dump(document, out, ensure_ascii=False)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def read_snapshot(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StateError(f"{path}: unreadable snapshot ({exc}); start with --fresh to discard it") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise StateError(f"{path}: not a snapshot of format {FORMAT}; start with --fresh to discard it")
    return document


class StateError(Exception):
    """The state folder cannot be used (locked by another stack, or a snapshot is unreadable)."""


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """One stack per state folder: a second one would overwrite the first one's snapshots."""
    folder.mkdir(parents=True, exist_ok=True)
    handle: IO[str] = (folder / LOCK_FILE).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StateError(
                f"{folder} is used by another running local stack (stop it, or choose --state-dir)"
            ) from None
        yield
    finally:
        handle.close()


def discard(folder: Path) -> list[str]:
    """`up --fresh`: remove the snapshots (only our own files, whatever else the folder holds)."""
    removed = []
    for name in SNAPSHOT_FILES:
        path = folder / name
        if path.exists():
            path.unlink()
            removed.append(name)
    return removed


class StateKeeper:
    """Restores a folder's snapshots into moto, then writes them again whenever a service changed."""

    def __init__(self, folder: Path, clients: Callable[[str], Any], interval: float = 1.0) -> None:
        self.folder = folder
        self.clients = clients  # service name -> a boto3 client of the moto server
        self.interval = interval
        self.ready = threading.Event()
        self._dirty: set[str] = set()
        self._lock = threading.Lock()
        self._ssm = SsmHistories()

    def mark(self, service: str) -> None:
        with self._lock:
            self._dirty.add(service)

    def restore(self) -> dict[str, int]:
        counts = {}
        dynamodb = read_snapshot(self.folder / DYNAMODB_FILE)
        ssm = read_snapshot(self.folder / SSM_FILE)
        if dynamodb is not None:
            counts["items"] = restore_dynamodb(self.clients("dynamodb"), dynamodb)
        if ssm is not None:
            counts["parameters"] = restore_ssm(self.clients("ssm"), ssm)
        with self._lock:
            self._dirty.clear()  # the replay's own writes changed nothing worth saving
        self.ready.set()
        return counts

    def save(self, services: Iterable[str] | None = None) -> list[str]:
        """Write the snapshots of the changed services (or of `services`); returns the services saved."""
        with self._lock:
            todo, self._dirty = (set(services) if services is not None else self._dirty), set()
        written: list[str] = []
        try:
            if "dynamodb" in todo:
                write_atomic(self.folder / DYNAMODB_FILE, dump_dynamodb(self.clients("dynamodb")))
                written.append("dynamodb")
            if "ssm" in todo:
                write_atomic(self.folder / SSM_FILE, self._ssm.dump(self.clients("ssm")))
                written.append("ssm")
        finally:
            with self._lock:
                self._dirty |= todo - set(written)  # not saved: tried again on the next round
        return written

    def run(self, stop: threading.Event) -> None:
        """Save every `interval` while something changed, until `stop`; then save once more."""
        while not stop.wait(self.interval):
            try:
                self.save()
            except Exception as exc:  # moto busy or the disk full: keep serving, try again
                print(f"warning: could not save the local state to {self.folder}: {exc}", file=sys.stderr)
        self.save()

    def wsgi(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """moto's WSGI app, noting which services each request changes, plus a readiness route that
        answers 200 only once the snapshots are restored."""

        def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
            if environ.get("PATH_INFO") == READY_PATH:
                status = "200 OK" if self.ready.is_set() else "503 Service Unavailable"
                start_response(status, [("Content-Type", "text/plain")])
                return [b"restored\n" if self.ready.is_set() else b"restoring\n"]
            response = app(environ, start_response)
            # Marked once moto has applied the request, so a save running meanwhile cannot miss it.
            service = changed_service(environ.get("HTTP_X_AMZ_TARGET"))
            if service is not None:
                self.mark(service)
            return response

        return wrapped
