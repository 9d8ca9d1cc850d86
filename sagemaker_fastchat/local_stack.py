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
from sagemaker_fastchat.registry_ops import Registry, put_model
from sagemaker_fastchat.settings import (
    DEFAULT_VOTE_SPOOL,
    LocalStackSettings,
    MotoSettings,
    add_flags,
    settings_from,
)
from sagemaker_fastchat.supervisor import Supervisor, http_ready
from stores.registry import DynamoRegistry, create_table
from stores.rollout_metrics import create_table as create_metrics_table
from stores.votes import DEFAULT_COUNTS_TABLE, DEFAULT_VOTES_TABLE
from stores.votes import create_tables as create_vote_tables
from sync.settings import DEFAULT_TABLE

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
    add_flags(p, MotoSettings)
    p.add_argument(
        "--state-dir",
        type=Path,
        help="keep DynamoDB tables and SSM parameter histories in this folder (default: in memory only)",
    )
    p.add_argument("--fresh", action="store_true", help="discard the folder's saved state first")
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

    settings = settings_from(args, MotoSettings)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per AWS call drowns the stack's logs
    endpoint = f"http://127.0.0.1:{settings.port}"
    keeper = (
        StateKeeper(args.state_dir, partial(_moto_client, endpoint, settings.region))
        if args.state_dir
        else None
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
            settings.port,
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


def register(sub: Any) -> None:
    add_moto_parser(sub)
    p = sub.add_parser(
        "up", help="run the whole stack locally (moto, sync, stand-in, FastChat), Ctrl-C stops"
    )
    add_flags(p, LocalStackSettings)  # ports, names, state folder: flag, then variable, then default
    p.add_argument(
        "--forward",
        action="append",
        default=[],
        metavar="ENDPOINT=URL",
        help="serve ENDPOINT from your own local model server (TGI or OpenAI-compatible URL)",
    )
    p.add_argument(
        "--fresh", action="store_true", help="discard the saved state and start empty (demo models again)"
    )
    p.add_argument("--no-demo-models", action="store_true", help="do not seed the three demo models")
    p.add_argument("--no-web", action="store_true", help="do not start the web UI")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.set_defaults(handler=run)


def state_dir(settings: LocalStackSettings) -> Path:
    """--state-dir, else $SFC_STATE_DIR, else the XDG default."""
    return settings.state_folder()


def fresh_refusal(folder: Path) -> str | None:
    """`up --fresh` with votes still in the folder's spool: why it does not start. The spool holds votes
    the table has not got yet; discarding them silently loses votes, and replaying them into the fresh,
    empty tables mixes the old state into the new one, so the user chooses."""
    spool = folder / local_state.VOTE_SPOOL_FILE
    count = local_state.spooled_votes(spool)
    if not count:
        return None
    return (
        f"error: --fresh: {spool} holds {count} vote(s) not yet written to the votes table; run `up` "
        "without --fresh to have them written, or move that file away (to keep them) and run --fresh again"
    )


def legacy_spool_warning(legacy: Path, folder: Path) -> str | None:
    """Votes an earlier version's stack spooled at the one path every stack shared: this stack does not
    replay them (they may belong to another stack's tables), so it names them and where they would go."""
    count = local_state.spooled_votes(legacy)
    if not count:
        return None
    return (
        f"warning: {legacy} holds {count} vote(s) not yet written (spooled by an earlier version); this "
        f"stack's spool is {folder / local_state.VOTE_SPOOL_FILE}: move the file there (while the stack is "
        "stopped) for this stack to write them"
    )


def _port_free(host: str, port: int, kind: socket.SocketKind = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as s:
        if kind == socket.SOCK_STREAM:  # a TCP port in TIME_WAIT is free to bind (UDP would share it)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def busy_ports(host: str, ports: Ports) -> list[str]:
    """`name port` for each port another process holds: TCP, except the X-Ray collector's UDP port (a busy
    one would otherwise stop the stack just after its banner, with the collector's traceback)."""
    return [
        f"{name} {port}" + (" (UDP)" if name == "xray" else "")
        for name, port in vars(ports).items()
        if not _port_free(
            host if name in ("api", "web") else "127.0.0.1",
            port,
            socket.SOCK_DGRAM if name == "xray" else socket.SOCK_STREAM,
        )
    ]


def stack_env(settings: LocalStackSettings, ports: Ports) -> dict[str, str]:
    """What every child gets: boto3 pointed at the local services, and the shared names."""
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.moto}",
        "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": f"http://127.0.0.1:{ports.standin}",
        # DescribeEndpoint (the check before a model takes traffic) goes to the stand-in too, not moto.
        "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{ports.standin}",
        "SYNC_ENDPOINT_CHECK": str(settings.sync_endpoint_check).lower(),
        "AWS_ACCESS_KEY_ID": settings.access_key_id,
        "AWS_SECRET_ACCESS_KEY": settings.secret_access_key,
        "AWS_DEFAULT_REGION": settings.region,
        "AWS_REGION": settings.region,
        "AWS_ACCOUNT_ID_ENDPOINT_MODE": "disabled",
        "REGISTRY_TABLE": settings.table,
        "SSM_PREFIX": settings.ssm_prefix,
        # issue 17: workers add outcome counts, the step runner reads them
        "ROLLOUT_METRICS_TABLE": settings.rollout_metrics_table,
        "CONTROLLER_ADDRESS": f"http://127.0.0.1:{ports.controller}",
        "WORKER_URL": f"http://127.0.0.1:{ports.worker}",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{ports.xray}",
        "XRAY_SAMPLING_RATE": settings.xray_sampling_rate,  # locally every request is traced
        # This stack's own files, in its state folder: the web's votes spool, the collector's traces.
        "ARENA_VOTE_SPOOL": str(state_dir(settings) / local_state.VOTE_SPOOL_FILE),
        "XRAY_TRACES_FILE": str(stack_traces_file(settings)),
        "PYTHONUNBUFFERED": "1",
    }


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
    """Start every child and wait until they are ready; `args`: `up`'s command line (its settings fields,
    given or not, and --fresh, --forward, --no-demo-models, --no-web, --ready-timeout)."""
    settings = settings_from(args, LocalStackSettings)
    ports = Ports(
        settings.api_port,
        settings.web_port,
        settings.controller_port,
        settings.worker_port,
        settings.moto_port,
        settings.standin_port,
        settings.xray_port,
    )
    refusal = fresh_refusal(state_dir(settings)) if args.fresh else None
    if refusal:
        raise SystemExit(refusal)
    busy = busy_ports(settings.host, ports)
    if busy:
        raise SystemExit(f"error: ports already in use: {', '.join(busy)} (choose others with --<name>-port)")
    warning = legacy_spool_warning(DEFAULT_VOTE_SPOOL, state_dir(settings))
    if warning:
        print(warning, file=sys.stderr, flush=True)
    env = stack_env(settings, ports)
    os.environ.update(env)  # our own boto3 calls below use the same configuration
    loop = "127.0.0.1"
    moto = [
        *CLI,
        "moto",
        "--port",
        str(ports.moto),
        "--region",
        settings.region,
        "--state-dir",
        str(state_dir(settings)),
    ]
    # Ready once the saved state is restored: before the sync and the worker read it.
    sup.start(
        "moto",
        [*moto, "--fresh"] if args.fresh else moto,
        env,
        http_ready(f"http://{loop}:{ports.moto}{READY_PATH}"),
    )
    sup.start("xray", [*CLI, "xray-collector", "--port", str(ports.xray)], env)
    standin = [*CLI, "standin", "--port", str(ports.standin), "--token-rate", str(settings.token_rate)]
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

    dynamodb = boto3.client("dynamodb", region_name=settings.region)
    create_table(dynamodb, settings.table)
    create_vote_tables(dynamodb, DEFAULT_VOTES_TABLE, DEFAULT_COUNTS_TABLE)  # the arena's votes
    create_metrics_table(dynamodb, env["ROLLOUT_METRICS_TABLE"])  # rollout outcome counts
    if not args.no_demo_models:
        seeded = seed_demo_models(Registry(DynamoRegistry(dynamodb, settings.table)))
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
            str(settings.poll_interval),
            "--heartbeat-interval",
            "5",
        ],
        env,
        http_ready(f"http://{loop}:{ports.worker}/ready"),
    )
    sup.start(
        "api",
        [*CLI, "api", "--host", settings.host, "--port", str(ports.api)],
        env,
        http_ready(f"http://{loop}:{ports.api}/health"),
    )
    if not args.no_web:
        # FastChat's UI lists model descriptions once, when it is built: start it once models are served.
        sup.wait_ready(["worker"], timeout=args.ready_timeout)
        sup.start(
            "web",
            [*CLI, "web", "--host", settings.host, "--port", str(ports.web)],
            env,
            http_ready(f"http://{loop}:{ports.web}/"),
        )
    sup.wait_ready(timeout=args.ready_timeout)
    return ports


def client_setup(settings: LocalStackSettings, ports: Ports) -> list[str]:
    """Shell lines that point another terminal's `sagemaker-fastchat` at this stack, pasted as they are."""
    lines = []
    if sys.prefix != sys.base_prefix:  # running from a virtualenv (./dev's .venv): the command lives there
        lines.append(f"source {shlex.quote(str(Path(sys.prefix) / 'bin' / 'activate'))}")
    exports = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports.moto}",
        # DescribeEndpoint (`models rollout` checks its candidate) answers from the stand-in, as for workers
        "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{ports.standin}",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "AWS_DEFAULT_REGION": settings.region,
    }
    if settings.table != DEFAULT_TABLE:
        exports["REGISTRY_TABLE"] = settings.table
    if settings.ssm_prefix != DEFAULT_PREFIX:
        exports["SSM_PREFIX"] = settings.ssm_prefix
    if ports.worker != 21002:
        exports["WORKER_URL"] = f"http://127.0.0.1:{ports.worker}"
    lines.append("export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in exports.items()))
    return lines


def stack_traces_file(settings: LocalStackSettings) -> Path:
    return state_dir(settings) / local_state.TRACES_FILE


def traces_command(settings: LocalStackSettings) -> str:
    """`traces` for this stack: as it is for the default state folder, else naming this stack's folder."""
    command = "sagemaker-fastchat traces --last 3"
    if state_dir(settings) == local_state.state_folder(None, settings.xdg_state_home):
        return command
    return f"{command} --state-dir {shlex.quote(str(state_dir(settings)))}"


def banner(settings: LocalStackSettings, ports: Ports, web: bool) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::") else settings.host
    example = str(resources.files("sagemaker_fastchat.examples").joinpath("tgi.json"))
    lines = [
        "",
        "sagemaker-fastchat is up (local stack: no AWS account used)",
        f"  web UI (chat + arena)   http://{host}:{ports.web}" if web else "",
        f"  OpenAI-compatible API   http://{host}:{ports.api}/v1",
        f"  worker model set        http://127.0.0.1:{ports.worker}/model-set",
        f"  SageMaker stand-in      http://127.0.0.1:{ports.standin}   (faults on demand: /_standin/faults)",
        f"  registry                DynamoDB table {settings.table} at http://127.0.0.1:{ports.moto} (moto)",
        f"  state                   {state_dir(settings)} (kept across restarts; `up --fresh` starts empty)",
        f"  traces                  {traces_command(settings)}   (in {stack_traces_file(settings)})",
        "  add a model from another terminal (paste these lines):",
        *(f"    {line}" for line in client_setup(settings, ports)),
        f"    sagemaker-fastchat models put my-model --endpoint demo-tgi-2 --config {shlex.quote(example)}",
        "Press Ctrl-C to stop everything.",
        "",
    ]
    return "\n".join(line for line in lines if line)


def run(args: argparse.Namespace) -> int:
    settings = settings_from(args, LocalStackSettings)  # a variable that does not parse: before any start
    sup = Supervisor()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    code = 0
    try:
        ports = start_stack(args, sup)
        print(banner(settings, ports, web=not args.no_web), flush=True)
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
        if sup.children:  # a pre-flight refusal (busy ports) started nothing: nothing to stop, say nothing
            print("stopping ...", flush=True)
            sup.stop_all()
            time.sleep(0.1)
    return code
