"""Process entry points for the FastChat side: `sagemaker-fastchat worker|controller|api`.

The local stack and the container images run these same commands, so what is tested locally is what
runs on ECS. Every option has an environment variable (shown in --help).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import uvicorn

from contract.logs import configure_logging
from contract.snapshot import DEFAULT_PREFIX, validate_prefix
from runtime import fastchat_compat
from sagemaker_fastchat.options import env_default, env_option
from telemetry.propagation import TraceMiddleware
from telemetry.tracing import Tracer

DEFAULTS = {
    "controller": ("127.0.0.1", 21001),
    "worker": ("127.0.0.1", 21002),
    "api": ("127.0.0.1", 8000),
}


def graceful_seconds() -> int:
    """How long SIGTERM waits for streams in flight (keep it below the ECS task's stopTimeout, 120 s)."""
    return int(env_default("GRACEFUL_SHUTDOWN_SECONDS", 110))


def _host_port(parser: argparse.ArgumentParser, role: str) -> None:
    host, port = DEFAULTS[role]
    prefix = role.upper()
    parser.add_argument(
        "--host", default=env_default(f"{prefix}_HOST", host), help=f"bind host (${prefix}_HOST)"
    )
    parser.add_argument(
        "--port", type=int, default=env_default(f"{prefix}_PORT", port), help=f"(${prefix}_PORT)"
    )


def controller_address_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--controller-address",
        default=env_default("CONTROLLER_ADDRESS", "http://127.0.0.1:21001"),
        help="FastChat controller URL ($CONTROLLER_ADDRESS)",
    )


# --- worker ------------------------------------------------------------------------------------------
def add_worker_parser(sub: Any) -> None:
    p = sub.add_parser("worker", help="run the FastChat model worker serving the live model set")
    _host_port(p, "worker")
    controller_address_arg(p)
    p.add_argument(
        "--worker-address",
        default=os.environ.get("WORKER_ADDRESS"),
        help="URL the controller uses to reach this worker (default http://HOST:PORT) ($WORKER_ADDRESS)",
    )
    env_option(p, "--ssm-prefix", "SSM_PREFIX", DEFAULT_PREFIX, "where the sync publishes")
    env_option(
        p, "--models-file", "MODELS_FILE", None, "serve a local registry JSON file (watched) instead of SSM"
    )
    env_option(p, "--poll-interval", "POLL_INTERVAL", 5.0, "seconds between SSM manifest checks")
    env_option(p, "--limit-concurrency", "WORKER_CONCURRENCY", 512, "concurrent streams per worker")
    env_option(p, "--heartbeat-interval", "HEARTBEAT_INTERVAL", 15.0, "seconds between controller heartbeats")
    env_option(p, "--read-timeout", "SAGEMAKER_READ_TIMEOUT", 120.0, "seconds to wait for the next token")
    env_option(
        p,
        "--first-token-timeout",
        "SAGEMAKER_FIRST_TOKEN_TIMEOUT",
        60.0,
        "seconds from a request to its first token (call and retries included) before a timeout error",
    )
    env_option(
        p,
        "--unready-after",
        "WORKER_UNREADY_AFTER",
        30.0,
        "/ready turns 503 when every concurrency slot was held this long with none given back",
    )
    env_option(
        p,
        "--rollout-metrics-table",
        "ROLLOUT_METRICS_TABLE",
        None,
        "DynamoDB table the worker adds per-minute outcome counts to for staged rollouts (empty: none)",
    )
    p.add_argument("--no-register", action="store_true", help="do not register with a controller")
    p.add_argument(
        "--no-endpoint-check",
        dest="endpoint_check",
        action="store_false",
        default=os.environ.get("ENDPOINT_CHECK", "true").strip().lower() not in ("0", "false", "no", "off"),
        help="let new or changed models take traffic without checking their endpoint first "
        "(DescribeEndpoint, and the probe of models with `probe: true`) ($ENDPOINT_CHECK=false)",
    )
    env_option(
        p, "--endpoint-recheck", "ENDPOINT_RECHECK", 30.0, "seconds between checks of a refused candidate"
    )
    p.set_defaults(handler=run_worker)


def build_warmup(args: argparse.Namespace) -> Any:
    """The check new or changed specs pass before taking traffic (None when turned off)."""
    if not getattr(args, "endpoint_check", True):
        return None
    from contract.endpoints import Boto3EndpointChecker, CachedChecker
    from runtime.adapter import sagemaker_client_config
    from runtime.warmup import Warmup, adapter_probe

    return Warmup(
        CachedChecker(Boto3EndpointChecker()),
        adapter_probe(sagemaker_client_config(16, read_timeout=30.0)),
        recheck=getattr(args, "endpoint_recheck", 30.0),
    )


def build_outcomes(args: argparse.Namespace) -> Any:
    """The rollout's outcome recorder (runtime/outcomes.py), or None without a table."""
    table = getattr(args, "rollout_metrics_table", None)
    if not table:
        return None
    import boto3
    from botocore.config import Config

    from runtime.outcomes import OutcomeRecorder
    from stores.rollout_metrics import DynamoOutcomeStore

    config = Config(connect_timeout=3, read_timeout=5, retries={"max_attempts": 2, "mode": "standard"})
    return OutcomeRecorder(DynamoOutcomeStore(table, boto3.client("dynamodb", config=config)))


def build_worker(args: argparse.Namespace) -> tuple[Any, Any]:
    """The worker and its app, wired to its model-set source (kept separate from serving, for tests)."""
    from contract.ssm_reader import SsmReader
    from runtime.adapter import SageMakerAdapter, SageMakerClient, sagemaker_client_config
    from runtime.model_set import LiveModelSet
    from runtime.poller import Poller
    from runtime.sources import FileSource, SsmSource, ssm_client
    from runtime.variants import Breakers, assistant_role
    from runtime.worker import SetWorker, WorkerSettings, create_worker_app

    live = LiveModelSet()
    fastchat_compat.install_live_template_adapter(
        lambda name: a.spec.conv_template if (a := live.current.get(name)) is not None else None
    )
    client = SageMakerClient(sagemaker_client_config(args.limit_concurrency + 8, args.read_timeout))
    warmup = build_warmup(args)
    breakers, outcomes = Breakers(), build_outcomes(args)

    def make_adapter(spec: Any) -> SageMakerAdapter:
        if spec.conv_template and not fastchat_compat.known_conv_template(spec.conv_template):
            raise ValueError(f"conv_template {spec.conv_template!r} is not a FastChat conversation template")
        return SageMakerAdapter(
            spec,
            client,
            args.first_token_timeout,
            breakers=breakers,
            excluded=warmup.excluded_variants(spec) if warmup is not None else None,
            assistant_role=assistant_role(spec),
            recorder=outcomes.record if outcomes is not None else None,
        )

    source: Any
    if args.models_file:
        source = FileSource(Path(args.models_file))
    else:
        source = SsmSource(SsmReader(ssm_client(), validate_prefix(args.ssm_prefix)))
    settings = WorkerSettings(
        worker_address=args.worker_address or f"http://{args.host}:{args.port}",
        controller_address=args.controller_address,
        limit_concurrency=args.limit_concurrency,
        heartbeat_interval=args.heartbeat_interval,
        register=not args.no_register,
        unready_after=args.unready_after,
    )
    worker = SetWorker(settings, live)
    live.on_swap(lambda _new: worker.register())
    poller = Poller(source, live, make_adapter, interval=args.poll_interval, warmup=warmup)
    background = [poller.run] + ([outcomes.run] if outcomes is not None else [])
    if settings.register:
        background.append(worker.heartbeat_forever)
    status = warmup.describe if warmup is not None else lambda: {"enabled": False}
    return worker, create_worker_app(worker, background, resources=[client], endpoint_check=status)


def run_worker(args: argparse.Namespace) -> int:
    from runtime.tracing import tracer

    configure_logging()
    tracer.prepare()
    _, app = build_worker(args)
    uvicorn.run(
        app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=graceful_seconds()
    )
    return 0


# --- controller --------------------------------------------------------------------------------------
def add_controller_parser(sub: Any) -> None:
    p = sub.add_parser("controller", help="run FastChat's controller (keep it on loopback: CVE-2024-10044)")
    _host_port(p, "controller")
    p.set_defaults(handler=run_controller)


def run_controller(args: argparse.Namespace) -> int:
    fastchat_compat.prepare_fastchat_logging()
    from fastchat.serve import controller

    fastchat_compat.reclaim_logging()
    controller.controller = controller.Controller("shortest_queue")
    tracer = Tracer("sagemaker-fastchat-controller")
    # Only the per-chat lookups are traced; heartbeats and registrations would drown the traces.
    app = TraceMiddleware(
        controller.app, tracer, "sagemaker-fastchat-controller", only=("/get_worker_address",)
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


# --- OpenAI-compatible API server --------------------------------------------------------------------
def add_api_parser(sub: Any) -> None:
    p = sub.add_parser("api", help="run the OpenAI-compatible API (over the controller and its workers)")
    _host_port(p, "api")
    controller_address_arg(p)
    p.add_argument("--api-keys", default=os.environ.get("API_KEYS"), help="comma-separated keys ($API_KEYS)")
    env_option(
        p, "--workers", "API_PROCESSES", 1, "API processes (uvicorn workers) when one core is not enough"
    )
    env_option(p, "--max-n", "API_MAX_N", 4, "the largest `n` (choices per request) accepted")
    env_option(
        p, "--worker-timeout", "API_WORKER_TIMEOUT", 130.0, "seconds to wait for the worker's next frame"
    )
    p.set_defaults(handler=run_api)


def run_api(args: argparse.Namespace) -> int:
    # Each uvicorn process builds its app from the environment (runtime.openai_api.app_from_env).
    os.environ["CONTROLLER_ADDRESS"] = args.controller_address
    os.environ["API_KEYS"] = args.api_keys or ""
    os.environ["API_MAX_N"] = str(args.max_n)
    os.environ["API_WORKER_TIMEOUT"] = str(args.worker_timeout)
    uvicorn.run(
        "runtime.openai_api:app_from_env",
        factory=True,
        workers=args.workers if args.workers > 1 else None,
        host=args.host,
        port=args.port,
        log_level="warning",
        timeout_graceful_shutdown=graceful_seconds(),
    )
    return 0


def register(sub: Any) -> None:
    from runtime.web_ui import add_web_parser

    add_controller_parser(sub)
    add_worker_parser(sub)
    add_api_parser(sub)
    add_web_parser(sub)
