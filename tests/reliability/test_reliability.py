"""The reliability harness's CI profile (`./dev reliability --profile ci`, benchmarks/reliability/): one
local stack; swap under load, a few faults and bad inputs of every kind. Each case is one test that asserts
the fixed behaviour of issue 13.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.reliability.cases import CI_FAULTS, CI_REGISTRY, CI_REQUESTS

ROOT = Path(__file__).resolve().parents[2]
HARNESS_TIMEOUT = 280


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """Runs the CI profile once (its own stack on free ports) and returns its checks by section/case."""
    out = tmp_path_factory.mktemp("reliability") / "results.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.reliability", "--profile", "ci", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=HARNESS_TIMEOUT,
        check=False,
    )
    assert out.exists(), (
        f"the harness crashed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    )
    checks = json.loads(out.read_text())["checks"]
    return {f"{c['section']}/{c['case']}": c for c in checks}


def verdict(harness: dict[str, dict[str, Any]], key: str) -> None:
    assert key in harness, f"{key} did not run; ran: {sorted(harness)}"
    check = harness[key]
    assert check["ok"], f"{check['what']}: {check['observed']}"


@pytest.mark.parametrize("case", ["streams", "propagation", "worker-ready"])
def test_swap_under_load(harness: dict[str, dict[str, Any]], case: str) -> None:
    """Streams during registry writes: 0 failed / truncated / wrong-endpoint, every write served."""
    verdict(harness, f"swap/{case}")


@pytest.mark.parametrize("case", CI_REGISTRY)
def test_bad_registry_write(harness: dict[str, dict[str, Any]], case: str) -> None:
    """A clear refusal (CLI) or a published rejection (raw write); nothing else changes."""
    verdict(harness, f"registry/{case}")


@pytest.mark.parametrize("case", [*CI_REQUESTS, "after-all"])
def test_bad_request(harness: dict[str, dict[str, Any]], case: str) -> None:
    """A clear 4xx or error frame; no slot leaked; other models answer byte-identically."""
    verdict(harness, f"api/{case}")


@pytest.mark.parametrize("case", CI_FAULTS)
def test_fault(harness: dict[str, dict[str, Any]], case: str) -> None:
    """The client sees a clear error, the worker stays up, the stack converges."""
    verdict(harness, f"faults/{case}")
