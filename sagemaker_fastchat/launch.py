"""Process entry points for the FastChat side: `sagemaker-fastchat worker|controller|api`.

The local stack and the container images run these same commands, so what is tested locally is what
runs on ECS. Every setting is a flag and an environment variable (sagemaker_fastchat/settings.py; shown
in --help); this module reads them and wires the runtime's parts together.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import uvicorn

from contract.snapshot import validate_prefix
from runtime import fastchat_compat
from sagemaker_fastchat.settings import (
    ApiSettings,
    ControllerSettings,
    WorkerSettings,
    add_flags,
    settings_from,
)
from telemetry.propagation import TraceMiddleware
from telemetry.settings import TelemetrySettings


# --- worker ------------------------------------------------------------------------------------------
def worker_settings(args: argparse.Namespace) -> WorkerSettings:
    return settings_from(args, WorkerSettings)


def build_warmup(settings: WorkerSettings) -> Any:
    """The check new or changed specs pass before taking traffic (None when turned off)."""
    if not settings.endpoint_check:
        return None
    from contract.endpoints import CachedChecker
    from runtime.transport import sagemaker_client_config
    from runtime.warmup import Warmup, adapter_probe
    from stores.endpoints import Boto3EndpointChecker

    return Warmup(
        CachedChecker(Boto3EndpointChecker()),
        adapter_probe(sagemaker_client_config(16, read_timeout=30.0)),
        recheck=settings.endpoint_recheck,
    )


def build_outcomes(settings: WorkerSettings) -> Any:
    """The rollout's outcome recorder (runtime/outcomes.py), or None without a table."""
    if not settings.rollout_metrics_table:
        return None
    import boto3
    from botocore.config import Config

    from runtime.outcomes import OutcomeRecorder
    from stores.rollout_metrics import DynamoOutcomeStore

    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    table = settings.rollout_metrics_table
    return OutcomeRecorder(DynamoOutcomeStore(table, boto3.client("dynamodb", config=config)))


def breaker_policy(settings: WorkerSettings) -> Any:
    from rollout.breaker import BreakerPolicy

    return BreakerPolicy(
        consecutive=settings.breaker_consecutive_failures,
        window=settings.breaker_window,
        min_requests=settings.breaker_min_requests,
        max_error_rate=settings.breaker_error_rate,
        cooldown=settings.breaker_cooldown,
    )


def build_worker(settings: WorkerSettings, telemetry: TelemetrySettings | None = None) -> tuple[Any, Any]:
    """The worker and its app, wired to its model-set source (kept separate from serving, for tests)."""
    from runtime import worker as runtime_worker
    from runtime.adapter import SageMakerAdapter
    from runtime.model_set import LiveModelSet
    from runtime.poller import POLLER_SERVICE, Poller
    from runtime.sources import FileSource, SsmSource
    from runtime.tracing import WORKER_SERVICE
    from runtime.transport import SageMakerClient, sagemaker_client_config
    from runtime.variants import Breakers, assistant_role
    from stores.ssm import SnapshotReader, SsmParameters, ssm_client

    fastchat_compat.set_log_settings(settings.fastchat_log_level)
    live = LiveModelSet()
    client = SageMakerClient(sagemaker_client_config(settings.limit_concurrency + 8, settings.read_timeout))
    warmup = build_warmup(settings)
    breakers, outcomes = Breakers(breaker_policy(settings)), build_outcomes(settings)

    def make_adapter(spec: Any) -> SageMakerAdapter:
        if spec.conv_template and not fastchat_compat.known_conv_template(spec.conv_template):
            raise ValueError(f"conv_template {spec.conv_template!r} is not a FastChat conversation template")
        return SageMakerAdapter(
            spec,
            client,
            settings.first_token_timeout,
            failover_first_token_timeout=settings.failover_first_token_timeout,
            breakers=breakers,
            excluded=warmup.excluded_variants(spec) if warmup is not None else None,
            assistant_role=assistant_role(spec),
            recorder=outcomes.record if outcomes is not None else None,
        )

    source: Any
    if settings.models_file:
        source = FileSource(Path(settings.models_file))
    else:
        source = SsmSource(SnapshotReader(SsmParameters(ssm_client()), validate_prefix(settings.ssm_prefix)))
    worker_settings = runtime_worker.WorkerSettings(
        worker_address=settings.worker_address or f"http://{settings.host}:{settings.port}",
        controller_address=settings.controller_address,
        limit_concurrency=settings.limit_concurrency,
        heartbeat_interval=settings.heartbeat_interval,
        register=settings.register_worker,
        unready_after=settings.unready_after,
    )
    telemetry = telemetry if telemetry is not None else TelemetrySettings()
    worker = runtime_worker.SetWorker(worker_settings, live, telemetry.tracer(WORKER_SERVICE))
    live.on_swap(lambda _new: worker.register())
    poller = Poller(
        source,
        live,
        make_adapter,
        interval=settings.poll_interval,
        warmup=warmup,
        tracer=telemetry.tracer(POLLER_SERVICE),
    )
    background = [poller.run] + ([outcomes.run] if outcomes is not None else [])
    if worker_settings.register:
        background.append(worker.heartbeat_forever)
    status = warmup.describe if warmup is not None else lambda: {"enabled": False}
    app = runtime_worker.create_worker_app(worker, background, resources=[client], endpoint_check=status)
    return worker, app


def run_worker(args: argparse.Namespace) -> int:
    settings, telemetry = worker_settings(args), TelemetrySettings()
    telemetry.configure_logging()
    worker, app = build_worker(settings, telemetry)
    worker.tracer.prepare()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
    )
    return 0


# --- controller --------------------------------------------------------------------------------------
def run_controller(args: argparse.Namespace) -> int:
    settings, telemetry = settings_from(args, ControllerSettings), TelemetrySettings()
    telemetry.configure_logging()
    fastchat_compat.set_log_settings(settings.fastchat_log_level)
    controller = fastchat_compat.apply_for_controller()
    controller.controller = controller.Controller("shortest_queue")
    tracer = telemetry.tracer("sagemaker-fastchat-controller")
    # Only the per-chat lookups are traced; heartbeats and registrations would drown the traces.
    app = TraceMiddleware(
        controller.app, tracer, "sagemaker-fastchat-controller", only=("/get_worker_address",)
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning")
    return 0


# --- OpenAI-compatible API server --------------------------------------------------------------------
def run_api(args: argparse.Namespace) -> int:
    settings = settings_from(args, ApiSettings)
    TelemetrySettings()  # a variable that does not parse stops the command here, not in each process
    # Each uvicorn process builds its app from the environment (api_app below): pass it these settings.
    os.environ.update(settings.as_env())
    uvicorn.run(
        "sagemaker_fastchat.launch:api_app",
        factory=True,
        workers=settings.workers if settings.workers > 1 else None,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        timeout_graceful_shutdown=settings.graceful_shutdown_seconds,
        timeout_keep_alive=settings.keep_alive,
    )
    return 0


def api_app() -> Any:
    """The traced API app from this process's settings (what each uvicorn worker process imports)."""
    from runtime import openai_api
    from telemetry import propagation

    settings, telemetry = ApiSettings(), TelemetrySettings()
    telemetry.configure_logging()
    fastchat_compat.apply_for_api()
    propagation.patch_aiohttp()  # outgoing calls carry the request's trace header
    tracer = telemetry.tracer("sagemaker-fastchat-api")
    tracer.prepare()  # load the X-Ray SDK now: inside the first sampled chat it stalled every stream
    app = openai_api.create_app(
        openai_api.Settings(
            controller_address=settings.controller_address,
            api_keys=settings.key_list(),
            max_n=settings.max_n,
            max_body_bytes=settings.max_body_bytes,
            worker_timeout=settings.worker_timeout,
        )
    )
    return TraceMiddleware(app, tracer, "sagemaker-fastchat-api")


def register(sub: Any) -> None:
    commands = (
        ("controller", "run FastChat's controller (keep it on loopback: CVE-2024-10044)", ControllerSettings),
        ("worker", "run the FastChat model worker serving the live model set", WorkerSettings),
        ("api", "run the OpenAI-compatible API (over the controller and its workers)", ApiSettings),
    )
    handlers = {"controller": run_controller, "worker": run_worker, "api": run_api}
    for name, help, settings in commands:
        p = sub.add_parser(name, help=help)
        add_flags(p, settings)
        p.set_defaults(handler=handlers[name])
