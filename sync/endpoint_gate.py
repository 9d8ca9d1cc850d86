"""The sync's optional endpoint check (SYNC_ENDPOINT_CHECK=true): before publishing, a new or changed spec
whose endpoint does not exist or is not serving is rejected like an invalid item, so its last good spec
stays published and the reason is in the manifest's `rejected` map (what `models list` shows).

Every endpoint that may take the spec's traffic is checked: the primary and each variant with weight > 0
(a rollout's candidate is one; weight 0 never takes a request, so a rolled-back or aborted candidate
never holds its model back). A variant that does not exist or is not serving rejects the whole spec like
the primary does (`model: variants[0].endpoint_name: endpoint X is Creating, not InService`): publishing
it would hand its weight to an endpoint that cannot answer, leaving the workers to exclude it.

Off by default in the Lambda: it needs `sagemaker:DescribeEndpoint`, which the sync's role has only with
the templates' SyncEndpointCheck=true. Only a verdict on the endpoint refuses here (it does not exist, or
its status is not a serving one): when the check itself fails (AccessDenied, throttling, timeout,
unreachable) the spec is published with a log line, because the sync checks once per publish and would
otherwise hold a good model back until the next registry change. The workers check every candidate
again, and retry.
"""

from __future__ import annotations

from dataclasses import replace

import structlog

from contract.endpoints import EndpointChecker, EndpointVerdict
from contract.errors import Problem
from contract.registry import RegistryState
from contract.snapshot import Manifest
from contract.spec import ModelSpec

log = structlog.get_logger("sync")


def screen(state: RegistryState, live: Manifest, checker: EndpointChecker) -> RegistryState:
    """`state` with new or changed specs whose endpoints (primary or variants with weight > 0) are not
    ready moved to `rejected`."""
    specs = dict(state.specs)
    rejected = dict(state.rejected)
    verdicts: dict[str, EndpointVerdict] = {}  # one DescribeEndpoint per endpoint name and publish

    def verdict(endpoint: str) -> EndpointVerdict:
        if endpoint not in verdicts:
            verdicts[endpoint] = checker.check(endpoint)
        return verdicts[endpoint]

    for name, spec in state.specs.items():
        entry = live.entry(name)
        if entry is not None and entry.hash == spec.hash:
            continue  # published already: checked when it was
        problems = []
        for where, endpoint in _endpoints(spec):
            v = verdict(endpoint)
            if not v.ok and not v.transient:
                problems.append(Problem(name, where, v.reason or f"endpoint {endpoint} is not ready"))
            elif v.reason:
                log.warning("endpoint_check_skipped", model=name, endpoint=endpoint, reason=v.reason)
        if problems:
            del specs[name]
            rejected[name] = "; ".join(str(p) for p in problems)
    return replace(state, specs=specs, rejected=rejected)


def _endpoints(spec: ModelSpec) -> list[tuple[str, str]]:
    """(where in the item, endpoint) of every endpoint that may take the spec's traffic: the primary
    ("": named by the model alone, as before variants) and each variant with weight > 0."""
    return [
        ("" if v.primary else f"variants[{i - 1}].endpoint_name", v.endpoint_name)
        for i, v in enumerate(spec.variants())
        if v.primary or v.weight > 0
    ]
