"""The sync Lambda: a DynamoDB Stream batch in, a validated model set published to SSM.

It does not trust the batch's deltas: records are only a trigger. Each invocation reads the whole table
(consistent, paginated), evaluates it with the shared contract and publishes. Duplicated, reordered or
replayed records therefore converge to the same published state.

Two kinds of failure, handled apart so the stream never wedges:
- A registry state that cannot be published (no usable `all-models`, a set too big for SSM, or any
  error that is not AWS's) is not transient: retrying cannot help. The live set is republished with the
  reason in the manifest's `not_published` (seen in `models list` and workers' `/model-set`) and the
  batch succeeds; the next registry write triggers the next attempt.
- Transient AWS errors (throttling, network, 5xx) and a manifest that kept moving report the batch's
  first record as failed (ReportBatchItemFailures), so the event source mapping retries and converges.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import boto3
import structlog
from botocore.exceptions import BotoCoreError, ClientError

from contract.endpoints import EndpointChecker
from contract.registry import ActiveListError, evaluate_registry
from contract.snapshot import Manifest, SnapshotError
from stores.endpoints import Boto3EndpointChecker
from stores.registry import DynamoRegistry, RegistryStore
from stores.ssm import SnapshotWriter, SsmParameters
from sync.endpoint_gate import screen
from sync.publisher import PublishResult, StaleManifestError, publish, report_not_published
from sync.settings import SyncSettings
from telemetry.settings import LambdaInvocation, TelemetrySettings
from telemetry.tracing import Tracer, child_span

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_ssm import SSMClient

log = structlog.get_logger("sync")
SYNC_SERVICE = "sagemaker-fastchat-sync"
MAX_ATTEMPTS = 3
TRANSIENT = (BotoCoreError, ClientError, StaleManifestError)  # worth a retry of the same batch


class SyncHandler:
    """Holds the stores across invocations (Lambda reuses the process)."""

    def __init__(
        self,
        registry: RegistryStore,
        store: SnapshotWriter,
        settings: SyncSettings,
        checker: EndpointChecker | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer = tracer if tracer is not None else Tracer(SYNC_SERVICE)
        self.registry = registry
        self.store = store
        self.settings = settings
        self.checker = checker  # the optional endpoint check before publishing (sync/endpoint_gate.py)
        self.attempts = 0  # attempts the last sync needed (1 unless another publisher raced it)

    @classmethod
    def from_clients(
        cls,
        dynamodb: DynamoDBClient,
        ssm: SSMClient,
        settings: SyncSettings,
        checker: EndpointChecker | None = None,
        tracer: Tracer | None = None,
    ) -> SyncHandler:
        """The handler on boto3 clients (the Lambda, the local stack): the settings' table and prefix."""
        registry = DynamoRegistry(dynamodb, settings.table_name)
        return cls(
            registry, SnapshotWriter(SsmParameters(ssm), settings.ssm_prefix), settings, checker, tracer
        )

    def sync(self, trace_header: str | None = None) -> PublishResult | None:
        """Read the table and publish it, or report why it cannot be published (`not_published`); None
        only when even that report does not fit in SSM (logged). Raises transient AWS errors.
        `trace_header`: the trace this sync's segment joins (in Lambda, the invocation's own).

        If another publisher moves the manifest meanwhile, the table is read again and the set rebuilt,
        so a stale view of the table is never published over a newer one."""
        with self.tracer.span(SYNC_SERVICE, trace_header) as span:
            result = self._sync()
            if span is not None and result is not None:
                span.annotate("model_set_version", result.version)
                span.annotate("published", result.published)
                for key in ("added", "changed", "removed"):
                    span.annotate(f"models_{key}", len(getattr(result, key)))
                span.annotate("models_rejected", len(result.rejected))
                span.annotate("not_published", bool(result.not_published))
            return result

    def _sync(self) -> PublishResult | None:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            self.attempts = attempt
            try:
                result = self._attempt()
            except StaleManifestError as exc:
                log.warning("model_set_rebuild", reason=str(exc), attempt=attempt)
                continue
            if result is not None:
                self._log(result)
            return result
        raise StaleManifestError(f"the manifest kept moving during {MAX_ATTEMPTS} attempts")

    def _attempt(self) -> PublishResult | None:
        try:
            with child_span("DynamoDB Scan", "aws") as scan:
                items = self.registry.scan()
                if scan is not None:
                    scan.meta("items", len(items))
            state = evaluate_registry(items)
            if self.checker is not None:  # the optional endpoint check before publishing
                with child_span("SageMaker DescribeEndpoint", "aws"):
                    live = self.store.load_manifest()
                    state = screen(state, live.manifest if live else Manifest(), self.checker)
            return publish(state, self.store)
        except (ActiveListError, SnapshotError) as exc:
            reason = str(exc)
        except TRANSIENT:
            raise
        except Exception as exc:  # a bug or an input nobody foresaw: retrying the same state cannot help
            log.exception("sync_failed_on_registry_state")
            reason = (
                f"the sync failed on the registry's state ({type(exc).__name__}: {exc}); see the sync log"
            )
        log.error("model_set_not_published", reason=reason, table=self.settings.table_name)
        try:
            return report_not_published(reason, self.store)
        except SnapshotError as exc:  # the live manifest plus a reason no longer fits: the log must do
            log.error("not_published_report_failed", reason=str(exc))
            return None

    def _log(self, result: PublishResult) -> None:
        fields = asdict(result)
        if result.published:
            log.info("model_set_published", **fields)
        else:
            log.info("model_set_unchanged", **fields)
        for name, reason in result.rejected.items():
            log.warning("model_rejected", model=name, reason=reason, version=result.version)

    def __call__(
        self, event: dict[str, Any], context: Any = None, trace_header: str | None = None
    ) -> dict[str, Any]:
        records = event.get("Records") or []
        try:
            self.sync(trace_header)
        except TRANSIENT:
            log.exception("sync_failed", records=len(records))
            if not records:
                raise
            first = records[0].get("dynamodb", {}).get("SequenceNumber")
            return {"batchItemFailures": [{"itemIdentifier": first}]}
        return {"batchItemFailures": []}


def endpoint_checker(settings: SyncSettings) -> EndpointChecker | None:
    if not settings.endpoint_check:
        return None
    return Boto3EndpointChecker()


_handler: SyncHandler | None = None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The Lambda entry point (clients created once per process)."""
    global _handler  # noqa: PLW0603 - one handler per Lambda process, reused across invocations
    if _handler is None:
        # The Lambda has no shell: its settings come from its environment, here.
        telemetry, settings = TelemetrySettings(), SyncSettings()
        telemetry.configure_logging()
        _handler = SyncHandler.from_clients(
            boto3.client("dynamodb"),
            boto3.client("ssm"),
            settings,
            endpoint_checker(settings),
            telemetry.tracer(SYNC_SERVICE),
        )
    return _handler(event, context, LambdaInvocation().trace_header)  # per invocation: it changes each time
