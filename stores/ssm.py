"""The published snapshot in SSM: a port for parameter I/O (`ParameterReader`, `ParameterStore`), its
boto3 adapter (`SsmParameters`), and the snapshot's rules on top of any port (`SnapshotReader`,
`SnapshotWriter`): manifest -> pages -> model parameters, each verified by its hash (docs/design.md
"Model-set snapshot in SSM"). The in-memory fake is `stores.testing.InMemoryParameters`.

Limits AWS enforces and moto does not are enforced by the writer: values up to 8 KB (Intelligent-Tiering
picks Standard up to 4 KB, Advanced beyond, and never needs a downgrade), and no labels: a labelled oldest
version would block new writes once a parameter holds 100 versions, so nothing here ever labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from contract.errors import SpecError
from contract.snapshot import (
    MAX_PARAMETER_BYTES,
    Manifest,
    SnapshotError,
    join_pages,
    manifest_name,
    parse_manifest_text,
    tier_for,
)
from contract.spec import ModelSpec, parse_spec_parameter
from telemetry.tracing import child_span

if TYPE_CHECKING:
    from mypy_boto3_ssm import SSMClient

# SSM keeps this many versions of a parameter; writing one more drops the oldest (unless labelled).
MAX_VERSIONS = 100


class ParameterReader(Protocol):
    def get(self, name: str, version: int | None = None) -> tuple[str, int] | None:
        """(value, version) of a parameter (a given version, or the latest), or None if absent."""
        ...


class ParameterStore(ParameterReader, Protocol):
    def put(self, name: str, value: str) -> int:
        """Write a new version (the oldest beyond 100 is dropped); returns its version number."""
        ...

    def delete(self, name: str) -> None:
        """Delete a parameter and all its versions."""
        ...

    def names_under(self, path: str) -> list[str]:
        """Every parameter name under `path`, recursively."""
        ...


# --- boto3 --------------------------------------------------------------------------------------------
# Per call: connect 3 s + read 5 s, two attempts (botocore's standard retry mode backs off in between).
# The poller's own backoff handles longer outages; boto3's defaults (60 s + 60 s, more attempts) would
# hold one poll for minutes with nothing in `last_error`.
SSM_CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=5, retries={"mode": "standard", "total_max_attempts": 2}
)


def ssm_client(config: Config | None = None, **kwargs: Any) -> SSMClient:
    """The boto3 SSM client a worker polls with: bounded timeouts, `config` merged over them, other
    kwargs as for boto3.client."""
    merged = SSM_CLIENT_CONFIG.merge(config) if config is not None else SSM_CLIENT_CONFIG
    client: SSMClient = boto3.client("ssm", config=merged, **kwargs)
    return client


class SsmParameters:
    """The boto3 implementation of `ParameterStore` (String parameters, Intelligent-Tiering)."""

    def __init__(self, ssm: SSMClient) -> None:
        self.ssm = ssm

    def get(self, name: str, version: int | None = None) -> tuple[str, int] | None:
        selector = f"{name}:{version}" if version is not None else name
        try:
            param = self.ssm.get_parameter(Name=selector)["Parameter"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ParameterNotFound", "ParameterVersionNotFound"):
                return None
            raise
        return str(param["Value"]), int(param["Version"])

    def put(self, name: str, value: str) -> int:
        with child_span("SSM PutParameter", "aws") as span:
            response = self.ssm.put_parameter(
                Name=name, Value=value, Type="String", Overwrite=True, Tier=tier_for(), DataType="text"
            )
            if span is not None:
                span.meta("parameter", name)
                span.meta("version", response["Version"])
        return int(response["Version"])

    def delete(self, name: str) -> None:
        self.ssm.delete_parameter(Name=name)

    def names_under(self, path: str) -> list[str]:
        names: list[str] = []
        for page in self.ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
            names.extend(p["Name"] for p in page.get("Parameters", []) if "Name" in p)
        return names


# --- The snapshot's rules, on any port ---------------------------------------------------------------
@dataclass(frozen=True)
class PublishedSet:
    """A manifest and the SSM version it was read at (the model-set version)."""

    version: int
    manifest: Manifest


class SnapshotReader:
    """Reads the snapshot under `prefix` (the sync Lambda, the workers and the CLI); counts its reads."""

    def __init__(self, parameters: ParameterReader, prefix: str) -> None:
        self.parameters = parameters
        self.prefix = prefix
        self.reads = 0

    def get(self, name: str, version: int | None = None) -> tuple[str, int] | None:
        """(value, version) of a parameter (a given version, or the latest), or None if absent."""
        self.reads += 1
        return self.parameters.get(name, version)

    def manifest_version(self) -> int | None:
        """Only the current version number (what a poller compares before reading anything else)."""
        got = self.get(manifest_name(self.prefix))
        return got[1] if got else None

    def load_manifest(self, version: int | None = None) -> PublishedSet | None:
        """The manifest (latest or a past version), pages joined and verified; None if never published."""
        got = self.get(manifest_name(self.prefix), version)
        if got is None:
            if version is not None:
                raise SnapshotError(f"model-set version {version} is not in SSM (SSM keeps 100 versions)")
            return None
        text, found_version = got
        parsed = parse_manifest_text(text)
        if isinstance(parsed, Manifest):
            return PublishedSet(found_version, parsed)
        texts = []
        for ref in parsed:
            page = self.get(ref.parameter, ref.version)
            if page is None:
                raise SnapshotError(f"manifest page {ref.parameter}:{ref.version} is missing from SSM")
            texts.append(page[0])
        return PublishedSet(found_version, join_pages(parsed, texts))

    def load_spec(self, parameter: str, version: int, expected_hash: str, model: str) -> ModelSpec:
        """One model's exact spec at a manifest entry's version, verified against the manifest's hash."""
        got = self.get(f"{self.prefix}/{parameter}", version)
        if got is None:
            raise SnapshotError(f"{model}: {self.prefix}/{parameter}:{version} is not in SSM")
        try:
            spec = parse_spec_parameter(got[0], model)
        except SpecError as exc:
            raise SnapshotError(str(exc)) from None
        if spec.hash != expected_hash:
            raise SnapshotError(
                f"{model}: parameter hash {spec.hash} differs from the manifest's {expected_hash}"
            )
        return spec


class SnapshotWriter(SnapshotReader):
    """The publisher's side: the reader plus writes, with SSM's limits enforced; counts its writes."""

    def __init__(self, parameters: ParameterStore, prefix: str) -> None:
        super().__init__(parameters, prefix)
        self.store = parameters
        self.writes = 0

    def put(self, name: str, value: str) -> int:
        """Write a new version; returns its version number."""
        size = len(value.encode())
        if size > MAX_PARAMETER_BYTES:
            raise SnapshotError(f"{name}: {size} bytes exceeds SSM's {MAX_PARAMETER_BYTES}-byte limit")
        self.writes += 1
        return self.store.put(name, value)

    def delete(self, name: str) -> None:
        self.writes += 1
        self.store.delete(name)

    def names_under(self, path: str) -> list[str]:
        return self.store.names_under(path)
