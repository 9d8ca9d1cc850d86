"""Reading the published snapshot from SSM: shared by the sync Lambda, the workers and the CLI.

The only I/O in the contract package, kept thin: one `get` call wrapped with the snapshot's rules
(manifest -> pages -> model parameters, each verified by its hash).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from contract.errors import SpecError
from contract.snapshot import Manifest, SnapshotError, join_pages, manifest_name, parse_manifest_text
from contract.spec import ModelSpec, parse_spec_parameter


@dataclass(frozen=True)
class PublishedSet:
    """A manifest and the SSM version it was read at (the model-set version)."""

    version: int
    manifest: Manifest


class SsmReader:
    def __init__(self, ssm: Any, prefix: str) -> None:
        self.ssm = ssm
        self.prefix = prefix
        self.reads = 0

    def get(self, name: str, version: int | None = None) -> tuple[str, int] | None:
        """(value, version) of a parameter (a given version, or the latest), or None if absent."""
        selector = f"{name}:{version}" if version is not None else name
        self.reads += 1
        try:
            param = self.ssm.get_parameter(Name=selector)["Parameter"]
        except ClientError as exc:
            if exc.response["Error"]["Code"] in ("ParameterNotFound", "ParameterVersionNotFound"):
                return None
            raise
        return str(param["Value"]), int(param["Version"])

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
