"""The sync's optional endpoint check (SYNC_ENDPOINT_CHECK=true): before publishing, a new or changed spec
whose endpoint does not exist or is not serving is rejected like an invalid item, so its last good spec
stays published and the reason is in the manifest's `rejected` map (what `models list` shows).

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

from contract.endpoints import EndpointChecker
from contract.registry import RegistryState
from contract.snapshot import Manifest

log = structlog.get_logger("sync")


def screen(state: RegistryState, live: Manifest, checker: EndpointChecker) -> RegistryState:
    """`state` with new or changed specs whose endpoint is not ready moved to `rejected`."""
    specs = dict(state.specs)
    rejected = dict(state.rejected)
    verdicts = {}
    for name, spec in state.specs.items():
        entry = live.entry(name)
        if entry is not None and entry.hash == spec.hash:
            continue  # published already: checked when it was
        if spec.endpoint_name not in verdicts:
            verdicts[spec.endpoint_name] = checker.check(spec.endpoint_name)
        verdict = verdicts[spec.endpoint_name]
        if not verdict.ok and not verdict.transient:
            del specs[name]
            rejected[name] = f"{name}: {verdict.reason}"
        elif verdict.reason:
            log.warning("endpoint_check_skipped", model=name, reason=verdict.reason)
    return replace(state, specs=specs, rejected=rejected)
