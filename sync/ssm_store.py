"""SSM writes for the publisher, on top of the shared reader.

Limits AWS enforces and moto does not are enforced here: values up to 8 KB (Intelligent-Tiering picks
Standard up to 4 KB, Advanced beyond, and never needs a downgrade), and no labels: a labelled oldest
version would block new writes once a parameter holds 100 versions, so nothing here ever labels.
"""

from __future__ import annotations

from contract.snapshot import MAX_PARAMETER_BYTES, SnapshotError, tier_for
from contract.ssm_reader import SsmReader
from telemetry.tracing import child_span


class SsmStore(SsmReader):
    """The boto3 implementation; tests run it against moto and subclass it to inject faults."""

    writes = 0

    def put(self, name: str, value: str) -> int:
        """Write a new version; returns its version number."""
        size = len(value.encode())
        if size > MAX_PARAMETER_BYTES:
            raise SnapshotError(f"{name}: {size} bytes exceeds SSM's {MAX_PARAMETER_BYTES}-byte limit")
        self.writes += 1
        with child_span("SSM PutParameter", "aws") as span:
            response = self.ssm.put_parameter(
                Name=name, Value=value, Type="String", Overwrite=True, Tier=tier_for(), DataType="text"
            )
            if span is not None:
                span.meta("parameter", name)
                span.meta("version", response["Version"])
        return int(response["Version"])

    def delete(self, name: str) -> None:
        self.writes += 1
        self.ssm.delete_parameter(Name=name)

    def names_under(self, path: str) -> list[str]:
        names: list[str] = []
        for page in self.ssm.get_paginator("get_parameters_by_path").paginate(Path=path, Recursive=True):
            names.extend(p["Name"] for p in page.get("Parameters", []))
        return names
