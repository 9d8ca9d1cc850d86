"""`sagemaker-fastchat up`: the whole pipeline on one machine, no AWS account needed.

Supervised processes, logs prefixed by name: moto in server mode (DynamoDB, DynamoDB Streams, SSM), the
stream consumer running the real sync handler, the SageMaker runtime stand-in, FastChat's controller, our
worker, our OpenAI-compatible API and FastChat's web UI. The boto3 code is the production code; only
its configuration (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME, AWS_ENDPOINT_URL_SAGEMAKER)
points at the local services.
Ctrl-C stops everything (process groups, so nothing is left behind and the ports are freed).
The registry and the SSM history are kept across restarts in a state folder (see `local_state`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import boto3

from contract.snapshot import DEFAULT_PREFIX
from sagemaker_fastchat import local_state
from sagemaker_fastchat.local_state import READY_PATH, StateKeeper
from sagemaker_fastchat.options import env_option
from sagemaker_fastchat.registry_ops import Registry, put_model
from sagemaker_fastchat.supervisor import Supervisor, http_ready
from stores.rollout_metrics import DEFAULT_TABLE as DEFAULT_METRICS_TABLE
from stores.rollout_metrics import create_table as create_metrics_table
from stores.votes import DEFAULT_COUNTS_TABLE, DEFAULT_VOTES_TABLE
from stores.votes import create_tables as create_vote_tables
from sync.settings import DEFAULT_TABLE
from telemetry.collector import traces_file

CLI = [sys.executable, "-m", "sagemaker_fastchat.cli"]
DEMO_EXAMPLES = ("tgi", "openai-sse", "lmi-jsonlines")


@dataclass(frozen=True)
class Ports:
    api: int
    web: int
    controller: int
    worker: int
    moto: int
    standin: int
    xray: int


def add_moto_parser(sub: Any) -> None:
    p = sub.add_parser("moto", help="run moto in server mode on loopback, without per-request access logs")
    env_option(p, "--port", "MOTO_PORT", 5000, "port")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="keep DynamoDB tables and SSM parameter histories in this folder (default: in memory only)",
    )
    p.add_argument("--fresh", action="store_true", help="discard the folder's saved state first")
    env_option(p, "--region", "AWS_REGION", "us-east-1", "the region whose state is kept")
    p.set_defaults(handler=run_moto)


def run_moto(args: argparse.Namespace) -> int:
    try:
        return _serve_moto(args)
    except local_state.StateError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def _serve_moto(args: argparse.Namespace) -> int:
    import logging

    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import make_server

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call drowns the stack's logs
    endpoint = f"http://127.0.0.1:{args.port}"
    keeper = (
        StateKeeper(args.state_dir, partial(_moto_client, endpoint, args.region)) if args.state_dir else None
    )
    stop = threading.Event()
    with local_state.locked(args.state_dir) if args.state_dir else contextlib.nullcontext():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        if args.fresh and args.state_dir:
            removed = local_state.discard(args.state_dir)
            print(f"--fresh: discarded {', '.join(removed) or 'nothing'} in {args.state_dir}", flush=True)
        # ThreadedMotoServer's server, with the state keeper around moto's app.
        app = DomainDispatcherApplication(create_backend_app)
        server = make_server(
            "127.0.0.1",
            args.port,
            keeper.wsgi(app) if keeper else app,
            threaded=True,
            request_handler=MotoRequestHandler,
        )
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            if keeper is None:
                stop.wait()
            else:
                restored = keeper.restore()
                print(f"restored from {args.state_dir}: {restored or 'nothing saved yet'}", flush=True)
                keeper.run(stop)
        except KeyboardInterrupt:
            if keeper is not None:
                keeper.save()
        finally:
            server.shutdown()
    return 0


def _moto_client(endpoint: str, region: str, service: str) -> Any:
    factory: Any = boto3.client  # the stubs' overloads want a literal service name
    return factory(
        service,
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )


def add_parser(sub: Any) -> None:
    add_moto_parser(sub)
    p = sub.add_parser(
        "up", help="run the whole stack locally (moto, sync, stand-in, FastChat), Ctrl-C stops"
    )
    env_option(
        p, "--host", "BIND_HOST", "127.0.0.1", "bind host of the API and UI (the rest stays on loopback)"
    )
    for name, default, what in (
        ("api-port", 8000, "OpenAI API"),
        ("web-port", 8001, "web UI"),
        ("controller-port", 21001, "controller"),
        ("worker-port", 21002, "worker"),
        ("moto-port", 5000, "moto"),
        ("standin-port", 8080, "SageMaker stand-in"),
        ("xray-port", 2000, "X-Ray collector (UDP)"),
    ):
        env_option(p, f"--{name}", name.replace("-", "_").upper(), default, f"{what} port")
    env_option(p, "--region", "AWS_REGION", "us-east-1", "region")
    env_option(p, "--table", "REGISTRY_TABLE", DEFAULT_TABLE, "registry table")
    env_option(p, "--ssm-prefix", "SSM_PREFIX", DEFAULT_PREFIX, "SSM prefix")
    env_option(p, "--poll-interval", "POLL_INTERVAL", 1.0, "seconds between the worker's SSM checks")
    env_option(p, "--token-rate", "DEMO_TOKEN_RATE", 20.0, "demo tokens per second per stream, 0 = unlimited")
    p.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="ENDPOINT=URL",
        help="serve ENDPOINT from your own local model server (TGI or OpenAI-compatible URL)",
    )
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path(os.environ["SFC_STATE_DIR"]) if os.environ.get("SFC_STATE_DIR") else None,
        help="where the registry and the SSM history are kept across restarts ($SFC_STATE_DIR; default "
        "$XDG_STATE_HOME/sagemaker-fastchat, i.e. ~/.local/state/sagemaker-fastchat)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard the saved state and start empty (demo models again)"
    )
    p.add_argument("--no-demo-models", action="store_true", help="do not seed the three demo models")
    p.add_argument("--no-web", action="store_true", help="do not start the web UI")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.set_defaults(handler=run)


def state_dir(args: argparse.Namespace) -> Path:
    return Path(args.state_dir or local_state.default_state_dir()).expanduser().resolve()


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def stack_env(args: argparse.Namespace, ports: Ports) -> dict[str, str]:
    """What every child gets: boto3 pointed at the local services, and the shared names."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.moto}",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{ports.standin}",
        # DescribeEndpoint (the check before a model takes traffic) goes to the stand-in too, not moto.
        "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{ports.standin}",
        "SYNC_ENDPOINT_CHECK": os.environ.get("SYNC_ENDPOINT_CHECK", "true"),
        "AWS_ACCESS_KEY_ID": os.environ.get("LOCAL_AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("LOCAL_AWS_SECRET_ACCESS_KEY", "local"),
        "AWS_DEFAULT_REGION": args.region,
        "AWS_REGION": args.region,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "REGISTRY_TABLE": args.table,
        "SSM_PREFIX": args.ssm_prefix,
        # issue 17: workers add outcome counts, the step runner reads them
        "ROLLOUT_METRICS_TABLE": os.environ.get("ROLLOUT_METRICS_TABLE") or DEFAULT_METRICS_TABLE,
        "CONTROLLER_ADDRESS": f"http://127.0.0.1:{ports.controller}",
        "WORKER_URL": f"http://127.0.0.1:{ports.worker}",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{ports.xray}",
        "XRAY_SAMPLING_RATE": os.environ.get("XRAY_SAMPLING_RATE", "1"),  # locally every request is traced
        "XRAY_TRACES_FILE": str(traces_file()),
        "PYTHONUNBUFFERED": "1",
    }


def ensure_table(dynamodb: Any, table: str) -> None:
    existing = dynamodb.list_tables().get("TableNames", [])
    if table in existing:
        return
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "model_name", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "model_name", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )


def demo_items() -> list[dict[str, Any]]:
    folder = resources.files("sagemaker_fastchat.examples")
    return [json.loads(folder.joinpath(f"{name}.json").read_text()) for name in DEMO_EXAMPLES]


def seed_demo_models(registry: Registry) -> list[str]:
    """Write the demo models unless the registry already has an all-models item (never overwrite)."""
    if registry.get("all-models") is not None:
        return []
    names = []
    for item in demo_items():
        put_model(registry, item, active=True)
        names.append(item["model_name"])
    return names


def start_stack(args: argparse.Namespace, sup: Supervisor) -> Ports:
    ports = Ports(
        args.api_port,
        args.web_port,
        args.controller_port,
        args.worker_port,
        args.moto_port,
        args.standin_port,
        args.xray_port,
    )
    busy = [
        f"{name} {port}"
        for name, port in vars(ports).items()
        if name != "xray" and not _port_free(args.host if name in ("api", "web") else "127.0.0.1", port)
    ]
    if busy:
        raise SystemExit(f"error: ports already in use: {', '.join(busy)} (choose others with --<name>-port)")
    env = stack_env(args, ports)
    os.environ.update(env)  # our own boto3 calls below use the same configuration
    loop = "127.0.0.1"
    moto = [
        *CLI,
        "moto",
        "--port",
        str(ports.moto),
        "--region",
        args.region,
        "--state-dir",
        str(state_dir(args)),
    ]
    # Ready once the saved state is restored: before the sync and the worker read it.
    sup.start(
        "moto",
        [*moto, "--fresh"] if args.fresh else moto,
        env,
        http_ready(f"http://{loop}:{ports.moto}{READY_PATH}"),
    )
    sup.start("xray", [*CLI, "xray-collector", "--port", str(ports.xray)], env)
    standin = [*CLI, "standin", "--port", str(ports.standin), "--token-rate", str(args.token_rate)]
    for forward in args.forward:
        standin += ["--forward", forward]
    sup.start("standin", standin, env, http_ready(f"http://{loop}:{ports.standin}/ping"))
    sup.start(
        "controller",
        [*CLI, "controller", "--host", loop, "--port", str(ports.controller)],
        env,
        http_ready(f"http://{loop}:{ports.controller}/list_models", expect=405),
    )
    sup.wait_ready(["moto", "standin"], timeout=args.ready_timeout)  # the sync describes endpoints

    dynamodb = boto3.client("dynamodb", region_name=args.region)
    ensure_table(dynamodb, args.table)
    create_vote_tables(dynamodb, DEFAULT_VOTES_TABLE, DEFAULT_COUNTS_TABLE)  # the arena's votes
    create_metrics_table(dynamodb, env["ROLLOUT_METRICS_TABLE"])  # rollout outcome counts
    if not args.no_demo_models:
        seeded = seed_demo_models(Registry(dynamodb, args.table))
        if seeded:
            print(f"seeded demo models: {', '.join(seeded)}", flush=True)

    sup.start("sync", [*CLI, "sync-local"], env)
    sup.start("rollout", [*CLI, "rollout", "run", "--interval", "10"], env)  # the scheduled Lambda's part
    sup.start(
        "worker",
        [
            *CLI,
            "worker",
            "--host",
            loop,
            "--port",
            str(ports.worker),
            "--poll-interval",
            str(args.poll_interval),
            "--heartbeat-interval",
            "5",
        ],
        env,
        http_ready(f"http://{loop}:{ports.worker}/ready"),
    )
    sup.start(
        "api",
        [*CLI, "api", "--host", args.host, "--port", str(ports.api)],
        env,
        http_ready(f"http://{loop}:{ports.api}/health"),
    )
    if not args.no_web:
        # FastChat's UI lists model descriptions once, when it is built: start it once models are served.
        sup.wait_ready(["worker"], timeout=args.ready_timeout)
        sup.start(
            "web",
            [*CLI, "web", "--host", args.host, "--port", str(ports.web)],
            env,
            http_ready(f"http://{loop}:{ports.web}/"),
        )
    sup.wait_ready(timeout=args.ready_timeout)
    return ports


def client_setup(args: argparse.Namespace, ports: Ports) -> list[str]:
    """Shell lines that point another terminal's `sagemaker-fastchat` at this stack, pasted as they are."""
    lines = []
    if sys.prefix != sys.base_prefix:  # running from a virtualenv (./dev's .venv): the command lives there
        lines.append(f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}")
    exports = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.moto}",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": args.region,
    }
    if args.table != DEFAULT_TABLE:
        exports["REGISTRY_TABLE"] = args.table
    if args.ssm_prefix != DEFAULT_PREFIX:
        exports["SSM_PREFIX"] = args.ssm_prefix
    if ports.worker != 21002:
        exports["WORKER_URL"] = f"http://127.0.0.1:{ports.worker}"
    lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))
    return lines


def banner(args: argparse.Namespace, ports: Ports) -> str:
    host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    example = str(resources.files("sagemaker_fastchat.examples").joinpath("tgi.json"))
    lines = [
        "",
        "sagemaker-fastchat is up (local stack: no AWS account used)",
        f"  web UI (chat + arena)   http://{host}:{ports.web}" if not args.no_web else "",
        f"  OpenAI-compatible API   http://{host}:{ports.api}/v1",
        f"  worker model set        http://127.0.0.1:{ports.worker}/model-set",
        f"  registry                DynamoDB table {args.table} at http://127.0.0.1:{ports.moto} (moto)",
        f"  state                   {state_dir(args)} (kept across restarts; `up --fresh` starts empty)",
        f"  traces                  sagemaker-fastchat traces --last 3   (collected in {traces_file()})",
        "  add a model from another terminal (paste these lines):",
        *(f"    {line}" for line in client_setup(args, ports)),
        f"    sagemaker-fastchat models put my-model --endpoint demo-tgi-2 --config {shlex.quote(example)}",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(line for line in lines if line)


def run(args: argparse.Namespace) -> int:
    sup = Supervisor()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        ports = start_stack(args, sup)
        print(banner(args, ports), flush=True)
        while not stop.wait(0.5):
            dead = sup.failed()
            if dead:
                print(f"error: {', '.join(dead)} stopped unexpectedly; stopping the stack", file=sys.stderr)
                code = 1
                break
    except KeyboardInterrupt:
        pass
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: the stack did not come up: {exc}", file=sys.stderr)
        code = 1
    finally:
        print("stopping ...", flush=True)
        sup.stop_all()
        time.sleep(0.1)
    return code
