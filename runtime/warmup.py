"""Warm before traffic: a new or changed model spec is checked before any request reaches it.

`Warmup.admit(candidates)` runs in the model-set poller's thread (never on the serving loop) for the specs
whose hash changed, and returns the ones refused, with their reasons. The poller then keeps each refused
model's last good spec serving (or leaves the model out when it had none), and the reasons show in
`/model-set` (`rejected`), in a `model_refused` log line and in the poller's trace (`warm-up`: `refused`,
and `variants_excluded` for the variants left out of a model that went live).

Two steps per candidate, bounded in time:
1. its endpoint exists and is serving (DescribeEndpoint, `contract.endpoints`), all endpoints checked
   concurrently, each verdict cached for a few seconds per endpoint name;
2. only for specs with `probe: true`: a one-token request streams back through the spec's own config
   (request building, the streaming call, decoding), all probes concurrently on a loop of their own.
When the check itself fails (throttled, timed out, unreachable) the candidate is refused for now, except
in the worker's first set: at start-up it has no last good spec of its own, so the published spec is let
through with a warning (a verdict, such as Creating or not found, still refuses).
A refused candidate is checked again every `recheck` seconds (an endpoint still Creating becomes
InService) until it passes or its spec changes; an unchanged, admitted spec is never checked again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import structlog

from contract.endpoints import EndpointChecker, EndpointVerdict
from contract.spec import ModelSpec
from telemetry.tracing import child_span

log = structlog.get_logger("warmup")

# The probe: one token, greedy, a neutral prompt. Its reply is discarded (never logged).
PROBE_PARAMS: Mapping[str, Any] = {"prompt": "Hello", "max_new_tokens": 1, "temperature": 0.0}

Probe = Callable[[ModelSpec], Awaitable[str | None]]  # None: the probe passed; else why it failed


def probe_failure(last: Mapping[str, Any] | None) -> str | None:
    """Why a probe's final FastChat chunk is a failure (pure): an error, or a reply without any token."""
    if last is None:
        return "the probe's stream ended without a result"
    if last.get("error_code"):
        return f"the probe failed: {last.get('text', '')}".replace("\n\n", " ")
    usage = last.get("usage") or {}
    if not last.get("text") and not usage.get("completion_tokens"):
        return "the probe's reply held no token (check endpoint_req_config.response.mapping.text)"
    return None


def adapter_probe(config: Any) -> Probe:
    """A probe through the real adapter code path (request building, the streaming call, decoding), on a
    client of its own (`config`: an AioConfig), opened and closed around each probe: probes are rare
    (new or changed specs with `probe: true`), and the serving client belongs to the serving loop."""
    from runtime.adapter import DEFAULT_FIRST_TOKEN_TIMEOUT, endpoint_stream
    from runtime.transport import AioBotocoreTransport

    async def probe(spec: ModelSpec) -> str | None:
        last: Mapping[str, Any] | None = None
        async with AioBotocoreTransport(config) as client:
            stream = endpoint_stream(spec, client, PROBE_PARAMS, DEFAULT_FIRST_TOKEN_TIMEOUT)
            async for last in stream:  # noqa: B007
                pass
        return probe_failure(last)

    return probe


@dataclass(frozen=True)
class _Refusal:
    hash: str
    reason: str
    at: float


class Warmup:
    def __init__(
        self,
        checker: EndpointChecker,
        probe: Probe | None = None,
        *,
        timeout: float = 10.0,
        probe_timeout: float = 30.0,
        recheck: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.checker = checker
        self.probe = probe
        self.timeout = timeout  # for all DescribeEndpoint calls of one round
        self.probe_timeout = probe_timeout
        self.recheck = recheck
        self.clock = clock
        self.warnings: dict[str, str] = {}  # model -> e.g. "cannot check ... (AccessDenied)"
        self._started = False  # whether the first set (the worker's start) was admitted
        self._refused: dict[str, _Refusal] = {}
        self.excluded: dict[str, dict[str, str]] = {}  # model -> {endpoint: why} (admitted models)
        self._excluded_at: dict[str, _Refusal] = {}  # when those were checked (rechecked like refusals)
        self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="endpoint-check")
        self._lock = threading.Lock()

    def recheck_due(self) -> bool:
        """Whether a refused candidate is due for another check (the poller rebuilds then)."""
        now = self.clock()
        waiting = [*self._refused.values(), *self._excluded_at.values()]
        return any(now - r.at >= self.recheck for r in waiting)

    def admit(self, candidates: Sequence[ModelSpec]) -> dict[str, str]:
        """Check new or changed specs; returns {model name: reason} for those that must stay out."""
        with self._lock, child_span("warm-up", "local") as span:
            refused = self._admit(list(candidates))
            if span is not None:
                span.meta("candidates", [s.name for s in candidates])
                span.meta("refused", refused)
                span.annotate("models_refused", len(refused))
                # admitted candidates with some variants left out: {model: {endpoint: why}}
                excluded = {
                    s.name: dict(self.excluded[s.name]) for s in candidates if s.name in self.excluded
                }
                span.meta("variants_excluded", excluded)
                span.annotate("variants_excluded", sum(len(e) for e in excluded.values()))
                if refused:
                    span.error("; ".join(refused.values()))
            return refused

    def _admit(self, candidates: list[ModelSpec]) -> dict[str, str]:
        now = self.clock()
        refused: dict[str, str] = {}
        due: list[ModelSpec] = []
        for spec in candidates:
            old = self._refused.get(spec.name)
            partly = self._excluded_at.get(spec.name)
            if old is not None and old.hash == spec.hash and now - old.at < self.recheck:
                refused[spec.name] = old.reason  # refused moments ago: not checked again per poll
            elif partly is not None and partly.hash == spec.hash and now - partly.at < self.recheck:
                continue  # live with some variants excluded moments ago: those wait for the recheck
            else:
                due.append(spec)
        # Every variant that may take traffic is checked (weight 0 never does); a model goes live when
        # at least one of them passes, the others stay out with weight 0 and their reason.
        variants = [(spec, v) for spec in due for v in spec.variants() if v.weight > 0]
        verdicts = self._check_endpoints([v.spec for _, v in variants])
        starting, self._started = not self._started, True
        failed: dict[tuple[str, str], str] = {}
        passed = []
        for spec, variant in variants:
            verdict = verdicts[variant.endpoint_name]
            if starting and verdict.transient:
                # A starting worker has no last good spec of its own: refusing the published spec because
                # the check itself failed (throttled, timed out) would leave it serving nothing.
                verdict = EndpointVerdict(True, f"{verdict.reason}; let through at start-up")
            self.warnings.pop(spec.name, None)
            if not verdict.ok:
                failed[spec.name, variant.endpoint_name] = verdict.reason or "the endpoint is not ready"
                continue
            if verdict.warning:
                self.warnings[spec.name] = verdict.warning
                log.warning("endpoint_check_skipped", model=spec.name, reason=verdict.warning)
            passed.append((spec, variant))
        probed = [(spec, v) for spec, v in passed if v.spec.probe]
        for (spec, variant), reason in zip(probed, self._probe_all([v.spec for _, v in probed]), strict=True):
            if reason is not None:
                failed[spec.name, variant.endpoint_name] = reason
        for spec in due:
            self.excluded.pop(spec.name, None)
            self._excluded_at.pop(spec.name, None)
            reasons = {e: r for (name, e), r in failed.items() if name == spec.name}
            live = [v for v in spec.variants() if v.weight > 0 and v.endpoint_name not in reasons]
            if not live:
                refused[spec.name] = "; ".join(reasons.values()) if len(reasons) == 1 else _joined(reasons)
            elif reasons:
                self.excluded[spec.name] = reasons
                self._excluded_at[spec.name] = _Refusal(spec.hash, "", now)
                log.warning("variant_refused", model=spec.name, reasons=reasons)
        due_names, hashes = {s.name for s in due}, {s.name: s.hash for s in candidates}
        self._refused = {  # only current candidates: a removed or reverted model is forgotten
            name: _Refusal(hashes[name], reason, now) if name in due_names else self._refused[name]
            for name, reason in refused.items()
        }
        for spec in due:
            if spec.name in refused:
                log.warning(
                    "model_refused", model=spec.name, endpoint=spec.endpoint_name, reason=refused[spec.name]
                )
            else:
                log.info("model_admitted", model=spec.name, endpoint=spec.endpoint_name, probed=spec.probe)
        return refused

    def excluded_variants(self, spec: ModelSpec) -> dict[str, str]:
        """The variants of `spec` that the last check left out: {endpoint: why} (the adapter gives them
        weight 0); they are checked again every `recheck` seconds, and at once when the spec changes."""
        return dict(self.excluded.get(spec.name, {}))

    def _check_endpoints(self, specs: list[ModelSpec]) -> dict[str, EndpointVerdict]:
        endpoints = list(dict.fromkeys(s.endpoint_name for s in specs))
        if not endpoints:
            return {}
        futures = {e: self._pool.submit(self.checker.check, e) for e in endpoints}
        deadline = self.clock() + self.timeout
        verdicts: dict[str, EndpointVerdict] = {}
        for endpoint, future in futures.items():
            try:
                verdicts[endpoint] = future.result(timeout=max(0.0, deadline - self.clock()))
            except FutureTimeout:
                silent = f"DescribeEndpoint gave no answer in {self.timeout:g} s"
                verdicts[endpoint] = EndpointVerdict(
                    False, f"cannot check endpoint {endpoint}: {silent}", transient=True
                )
            except Exception as exc:  # a checker must not raise; if one does, the candidate waits
                verdicts[endpoint] = EndpointVerdict(
                    False, f"cannot check endpoint {endpoint}: {exc!r}", transient=True
                )
        return verdicts

    def _probe_all(self, specs: list[ModelSpec]) -> list[str | None]:
        """Why each spec's probe failed (None: passed), in order."""
        if not specs or self.probe is None:
            return [None] * len(specs)
        probe = self.probe

        async def one(spec: ModelSpec) -> str | None:
            try:
                return await asyncio.wait_for(probe(spec), self.probe_timeout)
            except TimeoutError:
                return f"the probe gave no answer in {self.probe_timeout:g} s"
            except Exception as exc:  # never let a probe take the poller down
                return f"the probe failed: {type(exc).__name__}: {exc}"

        async def run() -> list[str | None]:
            return await asyncio.gather(*(one(s) for s in specs))

        return asyncio.run(run())  # the poller's thread has no loop of its own

    def describe(self) -> dict[str, Any]:
        """What `/model-set` shows under `endpoint_check`."""
        return {
            "enabled": True,
            "warnings": dict(self.warnings),
            "refused": {name: r.reason for name, r in self._refused.items()},
            "variants_excluded": {name: dict(reasons) for name, reasons in self.excluded.items()},
            "recheck_seconds": self.recheck,
        }


def _joined(reasons: Mapping[str, str]) -> str:
    return "no variant passed: " + "; ".join(f"{endpoint}: {why}" for endpoint, why in reasons.items())
