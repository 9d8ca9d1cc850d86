"""contract/ is the pure core: no AWS client or call in it, and no import from a layer above it. Its AWS
edges (SSM, the registry table, DescribeEndpoint) live in stores/ (docs/design.md "Stores")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CONTRACT = Path(__file__).resolve().parents[2] / "contract"
ABOVE = ("stores", "sync", "runtime", "telemetry", "sagemaker_fastchat", "arena", "benchmarks", "tests")
# boto3's DynamoDB type (de)serializer is plain conversion, no I/O: the only part of boto3 contract/ uses.
PURE_BOTO = ("boto3.dynamodb.types",)


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CONTRACT.glob("*.py")), ids=lambda p: p.name)
def test_contract_imports_no_aws_client_and_nothing_above_it(path: Path) -> None:
    modules = imported(path)
    aws = {
        m for m in modules if m.split(".")[0] in ("boto3", "botocore", "aiobotocore") and m not in PURE_BOTO
    }
    assert aws == set(), f"{path.name}: AWS I/O belongs in stores/"
    assert {m for m in modules if m.split(".")[0] in ABOVE} == set()
