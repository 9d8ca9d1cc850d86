"""Results: one row per check, rendered as a markdown table with a verdict per target."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Check:
    section: str  # "swap", "faults", "registry", "api"
    case: str  # a stable id (the CI tests refer to it)
    ok: bool
    what: str  # the input or the fault
    observed: str  # what the client / operator saw
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Results:
    profile: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    _last: float = field(default_factory=time.monotonic)

    def add(self, check: Check) -> Check:
        self.checks.append(check)
        now = time.monotonic()
        check.details.setdefault("seconds", round(now - self._last, 1))
        self._last = now
        mark = "PASS" if check.ok else "FAIL"
        took = check.details["seconds"]
        print(f"[{check.section}] {mark} {check.case} ({took} s): {check.observed[:200]}", flush=True)
        return check

    def section(self, name: str) -> list[Check]:
        return [c for c in self.checks if c.section == name]

    def mark(self) -> None:
        """Start timing the next check from now (after a section's set-up)."""
        self._last = time.monotonic()

    def to_json(self) -> dict[str, Any]:
        return {"profile": self.profile, "metrics": self.metrics, "checks": [asdict(c) for c in self.checks]}


TARGETS = (
    ("swap", "Swap under load: 0 failed / truncated / wrong-endpoint streams"),
    ("faults", "Faults: the client sees a clear error, the worker stays up, the stack converges"),
    ("registry", "Bad registry writes: a clear refusal or published rejection, nothing else changes"),
    ("api", "Bad API / worker requests: a clear 4xx or error frame, nothing else changes"),
)


def machine() -> str:
    try:
        uname = subprocess.run(["uname", "-a"], capture_output=True, text=True, check=False).stdout.strip()
    except OSError:
        uname = platform.platform()
    return f"`{uname}`, {os.cpu_count()} CPUs (nproc)"


def _cell(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split()).replace("|", "\\|")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown(results: Results, command: str) -> str:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability results",
        "",
        f"Run `{command}` ({results.profile} profile) on {now}, {machine()}.",
        "",
        "## Verdict per target",
        "",
        "| target | verdict | checks passed |",
        "|---|---|---|",
    ]
    for key, title in TARGETS:
        checks = results.section(key)
        if not checks:
            continue
        passed = sum(c.ok for c in checks)
        verdict = "met" if passed == len(checks) else "NOT met"
        lines.append(f"| {title} | **{verdict}** | {passed} / {len(checks)} |")
    if results.metrics:
        lines += ["", "## Measurements", "", "| measure | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(str(v))} |" for k, v in results.metrics.items()]
    for key, title in TARGETS:
        checks = results.section(key)
        if not checks:
            continue
        lines += ["", f"## {title}", "", "| case | result | input / fault | observed |", "|---|---|---|---|"]
        for c in checks:
            mark = "pass" if c.ok else "**FAIL**"
            lines.append(f"| `{c.case}` | {mark} | {_cell(c.what)} | {_cell(c.observed, 300)} |")
    return "\n".join(lines) + "\n"
