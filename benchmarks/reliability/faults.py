"""Faults: for each, what the client saw, whether the worker stayed up, and how long until the stack
served normally again (converged).

- a process killed with streams open (worker, stand-in) and restarted as ECS would restart it
  (`sagemaker-fastchat up`'s supervisor does not restart children: it stops the stack);
- the controller restarted (the worker must re-register through FastChat's heartbeat);
- SSM unavailable (503), throttled (400 ThrottlingException) or blackholed for a window, through the fault
  proxy in front of moto: streams keep working on the last good set, the outage shows in /model-set, and a
  registry write made during the outage is served after it;
- an endpoint failing mid-stream (`[[fail-after:N]]`) and one never sending a first token (`[[ttft:S]]`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks.reliability.cases import VICTIM, VICTIM_ENDPOINT, tgi_config
from benchmarks.reliability.chat import StreamResult, client_for, describe_error, stream_chat, sync_chat
from benchmarks.reliability.fault_proxy import FaultProxy, Mode
from benchmarks.reliability.report import Check, Results
from benchmarks.reliability.stack import HarnessStack
from benchmarks.reliability.swap import served
from stores.ssm import SSM_CLIENT_CONFIG

# A blackholed SSM call fails only when the worker's client gives up (read timeout x attempts, backoff
# included): a shorter window ends before the outage can show in /model-set's last_error.
_SSM: Any = SSM_CLIENT_CONFIG  # botocore's Config sets its attributes dynamically
BLACKHOLE_MIN_WINDOW = float(_SSM.read_timeout) * int(_SSM.retries["total_max_attempts"]) + 4.0

LONG = "[[tokens:150]]"  # 3 s at the harness's 50 tokens/s: streams are open when the fault hits


@dataclass
class FaultSettings:
    ssm_window: float = 60.0  # seconds each SSM fault lasts
    converge_timeout: float = 120.0
    streams: int = 8
    ttft: float = 150.0  # the endpoint's silence before its first token
    client_timeout: float = 200.0  # the OpenAI client's own timeout in that case
    only: tuple[str, ...] | None = None


def summarize(results: list[StreamResult], tokens: int) -> tuple[str, list[StreamResult]]:
    """One line on what the clients saw; and the streams that ended silently short (no error)."""
    whole = [r for r in results if r.error is None and r.words == tokens - 1]
    errors = [r for r in results if r.error is not None]
    silent = [r for r in results if r.error is None and r.words != tokens - 1]
    kinds = sorted({r.error for r in errors if r.error})
    line = f"{len(whole)} whole, {len(errors)} errors, {len(silent)} cut short without an error"
    if kinds:
        line += f" (e.g. {kinds[0][:150]})"
    return line, silent


def probe(stack: HarnessStack) -> bool:
    return "not a real LLM" in sync_chat(stack.api_url, "demo-tgi", "[[tokens:5]] probe", timeout=10)


def converge(stack: HarnessStack, timeout: float, extra: Callable[[], bool] | None = None) -> float | None:
    return stack.wait_for(lambda: probe(stack) and (extra is None or extra()), timeout, step=0.5)


async def _streams_with(
    stack: HarnessStack, n: int, action: Callable[[], None], delay: float = 1.0
) -> list[StreamResult]:
    client = client_for(stack.api_url, timeout=60)
    tasks = [
        asyncio.create_task(stream_chat(client, "demo-tgi", f"{LONG} fault stream {i}")) for i in range(n)
    ]
    await asyncio.sleep(delay)
    await asyncio.to_thread(action)
    out = list(await asyncio.gather(*tasks))
    await client.close()
    return out


def _fmt(seconds: float | None, timeout: float) -> str:
    return f"{seconds:.1f} s" if seconds is not None else f"not within {timeout:.0f} s"


class FaultRunner:
    def __init__(
        self, stack: HarnessStack, results: Results, settings: FaultSettings, proxy: FaultProxy | None
    ):
        self.stack, self.results, self.settings, self.proxy = stack, results, settings, proxy

    def wanted(self, case: str) -> bool:
        return self.settings.only is None or case in self.settings.only

    def add(self, case: str, ok: bool, what: str, observed: str) -> None:
        self.results.add(Check("faults", case, ok, what, observed))

    def run_all(self) -> None:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("endpoint-fails-mid-stream", self.mid_stream_failure),
            ("no-first-token", self.no_first_token),
            ("controller-restart", self.controller_restart),
            ("standin-killed", lambda: self.process_killed("standin")),
            ("worker-killed", lambda: self.process_killed("worker")),
            ("ssm-503", lambda: self.ssm_fault("503")),
            ("ssm-throttle", lambda: self.ssm_fault("throttle")),
            ("ssm-blackhole", lambda: self.ssm_fault("blackhole")),
        ]
        self.results.mark()
        for case, step in steps:
            if not self.wanted(case):
                continue
            try:
                step()
            except Exception as exc:  # report it and go on with the next fault
                self.add(case, False, case, f"harness error: {describe_error(exc)}")
            converge(self.stack, self.settings.converge_timeout)  # the next fault starts from a healthy stack

    # --- processes ------------------------------------------------------------------------------------
    def process_killed(self, name: str) -> None:
        timeout = self.settings.converge_timeout
        worker_pid = self.stack.pid("worker")
        results = asyncio.run(_streams_with(self.stack, self.settings.streams, lambda: self.stack.kill(name)))
        seen, silent = summarize(results, 150)
        ready_while_down = self.stack.ready_status()
        t = time.monotonic()
        self.stack.restart(name, timeout)
        took = converge(self.stack, timeout)
        total = None if took is None else time.monotonic() - t
        problems = []
        if silent:
            problems.append(f"{len(silent)} streams ended short with no error")
        if took is None:
            problems.append("did not converge")
        if name != "worker":
            if self.stack.pid("worker") != worker_pid or ready_while_down != 200:
                problems.append(
                    f"the worker did not stay up (/ready {ready_while_down} while {name} was down)"
                )
            worker = f"worker stayed up (/ready {ready_while_down} while {name} was down)"
        else:
            worker = "worker killed by the harness and restarted (the local supervisor does not restart it)"
        observed = f"client: {seen}; {worker}; converged {_fmt(total, timeout)} after the restart"
        self.add(
            f"{name}-killed",
            not problems,
            f"SIGKILL {name} with {len(results)} streams open, then restart it",
            observed + (f" — FAIL: {'; '.join(problems)}" if problems else ""),
        )

    def controller_restart(self) -> None:
        timeout = self.settings.converge_timeout
        worker_pid = self.stack.pid("worker")

        def bounce() -> None:
            self.stack.kill("controller")
            self.stack.restart("controller", timeout)

        t = time.monotonic()
        results = asyncio.run(_streams_with(self.stack, self.settings.streams, bounce))
        seen, silent = summarize(results, 150)
        took = converge(self.stack, timeout)
        total = None if took is None else time.monotonic() - t
        problems = []
        if silent:
            problems.append(f"{len(silent)} streams ended short with no error")
        if any(r.error for r in results):
            problems.append("streams in flight failed (they do not need the controller)")
        if took is None:
            problems.append("did not converge")
        if self.stack.pid("worker") != worker_pid or self.stack.ready_status() != 200:
            problems.append("the worker did not stay up")
        observed = (
            f"client: {seen}; worker stayed up: {self.stack.pid('worker') == worker_pid}; "
            f"new chats work {_fmt(total, timeout)} after the kill"
        )
        self.add(
            "controller-restart",
            not problems,
            f"kill and restart the controller with {len(results)} streams open",
            observed + (f" — FAIL: {'; '.join(problems)}" if problems else ""),
        )

    # --- SSM ------------------------------------------------------------------------------------------
    def ssm_fault(self, mode: Mode) -> None:
        case = f"ssm-{mode}"
        if self.proxy is None:
            self.add(case, False, case, "no fault proxy (the harness started without one)")
            return
        window, timeout = self.settings.ssm_window, self.settings.converge_timeout
        if mode == "blackhole":
            window = max(window, BLACKHOLE_MIN_WINDOW)
        worker_pid = self.stack.pid("worker")
        registry = self.stack.registry()
        description = f"written during the SSM {mode} window at {time.time():.0f}"
        chats, ready, errors = 0, [], []
        self.proxy.set_mode(mode)
        start, wall_start = time.monotonic(), time.time()
        written = False
        last_error = None
        while time.monotonic() - start < window:
            if not written and time.monotonic() - start > min(1.0, window / 3):
                item = {
                    "model_name": {"S": VICTIM},
                    "endpoint_name": {"S": VICTIM_ENDPOINT},
                    "endpoint_req_config": {"S": json.dumps(tgi_config())},
                    "description": {"S": description},
                }
                registry.store.put(item)
                written = True
            try:
                chats += probe(self.stack)
            except Exception as exc:  # the finding
                errors.append(describe_error(exc))
            ready.append(self.stack.ready_status())
            try:  # the outage must show while it lasts (the error recorded since it began)
                snap = self.stack.model_set()
                if snap.get("last_error") and (snap.get("last_error_at") or 0) >= wall_start:
                    last_error = snap["last_error"]
            except Exception as exc:  # the finding
                last_error = f"/model-set did not answer: {describe_error(exc)}"
            time.sleep(0.5)
        self.proxy.set_mode("pass")
        took = self.stack.wait_for(
            lambda: (served(self.stack.model_set(), VICTIM) or {}).get("description") == description, timeout
        )
        problems = []
        if errors:
            problems.append(f"{len(errors)} chats failed during the outage")
        if any(r != 200 for r in ready) or self.stack.pid("worker") != worker_pid:
            problems.append(f"the worker was not ready throughout ({sorted({str(r) for r in ready})})")
        if not last_error:
            problems.append("the outage does not show in /model-set last_error")
        if took is None:
            problems.append("the write made during the outage was not served")
        observed = (
            f"client: {chats} chats ok, {len(errors)} failed during {window:.0f} s; worker ready throughout: "
            f"{all(r == 200 for r in ready)}; last_error: {str(last_error)[:100]!r}; "
            f"proxy answered {self.proxy.counts[mode]} requests with {mode}; "
            f"write made during it served {_fmt(took, timeout)} after"
        )
        self.add(
            case,
            not problems,
            f"SSM {mode} for {window:.0f} s (fault proxy in front of moto)",
            observed + (f" — FAIL: {'; '.join(problems)}" if problems else ""),
        )

    # --- endpoints ------------------------------------------------------------------------------------
    def mid_stream_failure(self) -> None:
        async def run() -> tuple[StreamResult, list[StreamResult]]:
            client = client_for(self.stack.api_url, timeout=60)
            others = [
                asyncio.create_task(stream_chat(client, "demo-lmi", f"[[tokens:40]] neighbour {i}"))
                for i in range(4)
            ]
            failing = await stream_chat(client, "demo-tgi", "[[tokens:40]] [[fail-after:5]] fails mid-stream")
            rest = list(await asyncio.gather(*others))
            await client.close()
            return failing, rest

        failing, others = asyncio.run(run())
        seen, silent = summarize(others, 40)
        took = converge(self.stack, self.settings.converge_timeout)
        problems = []
        if failing.error is None:
            problems.append("the client saw no error")
        if silent or any(o.error for o in others):
            problems.append("neighbouring streams were affected")
        if self.stack.ready_status() != 200:
            problems.append("the worker is not ready")
        observed = (
            f"client: {failing.error or 'no error'} after {failing.text.count(' ')} words; "
            f"neighbours: {seen}; next chat ok {_fmt(took, 10)} after"
        )
        self.add(
            "endpoint-fails-mid-stream",
            not problems,
            "the endpoint fails after 5 tokens ([[fail-after:5]])",
            observed + (f" — FAIL: {'; '.join(problems)}" if problems else ""),
        )

    def no_first_token(self) -> None:
        s = self.settings

        async def run() -> StreamResult:
            client = client_for(self.stack.api_url, timeout=s.client_timeout)
            out = await stream_chat(client, "demo-tgi", f"[[ttft:{s.ttft:g}]] never answers")
            await client.close()
            return out

        busy = self.stack.queue_length() or 0
        result = asyncio.run(run())
        elapsed = result.ended - result.started
        error = result.error or ""
        problems = []
        if not error:
            problems.append("the client saw no error")
        elif error.startswith(("APITimeoutError", "APIConnectionError")):
            problems.append(
                "a bare client-side timeout / connection error, not the server's clear timeout error"
            )
        elif "Error code: 504" not in error and "time" not in error.lower():
            problems.append("neither a 504 nor an error saying it timed out")
        freed = self.stack.wait_for(lambda: (self.stack.queue_length() or 0) <= busy, 10)
        if freed is None:
            problems.append("its worker slot was not freed")
        if self.stack.ready_status() != 200:
            problems.append("the worker is not ready")
        observed = f"client after {elapsed:.1f} s: {error or 'no error'}"
        self.add(
            "no-first-token",
            not problems,
            f"the endpoint sends no first token for {s.ttft:g} s ([[ttft:S]])",
            observed + (f" — FAIL: {'; '.join(problems)}" if problems else ""),
        )
