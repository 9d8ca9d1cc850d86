"""Every command's settings: one pydantic-settings class per role, each field naming its environment
variable; every field is also a flag of the role's command (flag > variable > default), except the few
marked variable-only (credentials, and variables other tools define, e.g. XDG_STATE_HOME).

The shell (this package) alone reads the environment: it builds these objects and hands the values to
`runtime/`, `sync/` and `telemetry/`, which never read it (docs/design.md "Code layout"). The Lambdas have
no shell, so `sync.settings.SyncSettings` and `telemetry.settings.TelemetrySettings` (logging and
tracing, the same in every process) are classes of the same kind, built at their entry points too.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

from arena.ratings import DEFAULT_MIN_VOTES
from arena.votes import DEFAULT_MAX_VOTES_PER_VOTER_PER_DAY
from contract.snapshot import DEFAULT_PREFIX
from sagemaker_fastchat import local_state
from stores.rollout_metrics import DEFAULT_TABLE as DEFAULT_METRICS_TABLE
from stores.votes import DEFAULT_COUNTS_TABLE, DEFAULT_VOTES_TABLE
from sync.settings import DEFAULT_TABLE

S = TypeVar("S", bound=BaseSettings)

# Flags are parsed to these types by argparse (a bad flag is a usage error); everything else is pydantic's.
_FLAG_TYPES: dict[Any, type] = {int: int, float: float}
# Bounded numbers: out of range is `error: VARIABLE: why` (exit 2), not a traceback later (bind()'s
# OverflowError, watchfiles' on a negative poll interval, a Semaphore(-5)) or a worker that hangs (0 slots).
Port = Annotated[int, Field(ge=0, le=65535)]  # 0: any free port (in-process tests)
StackPort = Annotated[int, Field(ge=1, le=65535)]  # `up` tells its children and the user each port
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # intervals and timeouts
Count = Annotated[int, Field(ge=1)]  # concurrency, processes, n, bytes
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]  # a rate where 0 means unlimited
DEFAULT_VOTE_SPOOL = Path.home() / ".cache" / "sagemaker-fastchat" / "votes-spool.jsonl"


def number_in(
    kind: type[int] | type[float], low: float, high: float | None = None, unit: str = ""
) -> Any:  # an argparse `type=`
    """A positional or flag's number from `low` (to `high`); NaN, infinities and text are refused (exit 2)."""
    what = "a whole number" if kind is int else "a number"
    suffix = f" {unit}" if unit else ""

    def shown(v: float) -> str:
        return f"{int(v):,}" if kind is int else f"{v:g}"

    bounds = f"at least {shown(low)}" if high is None else f"{shown(low)} to {shown(high)}"

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not {what}{suffix}") from None
        if not (math.isfinite(value) and low <= value and (high is None or value <= high)):  # NaN too
            raise argparse.ArgumentTypeError(f"{text[:40]!r}: must be {bounds}{suffix}")
        return value

    return parse


def env(
    name: str,
    default: Any,
    help: str,
    flag: str | None = None,
    *,
    variable_only: bool = False,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
) -> Any:
    """A field read from $NAME (`validation_alias`); the help is the flag's, the flag is `--FIELD-NAME`
    unless named (none when `variable_only`); ge/gt/le bound a number (pydantic's)."""
    extra: dict[str, Any] = {"flag": flag, "variable_only": variable_only}
    return Field(
        default, validation_alias=name, description=help, json_schema_extra=extra, ge=ge, gt=gt, le=le
    )


def env_name(field: FieldInfo) -> str:
    return str(field.validation_alias)


class RoleSettings(BaseSettings):
    """The common configuration: variables by their own names, an empty variable counts as unset."""

    model_config = SettingsConfigDict(frozen=True, populate_by_name=True, env_ignore_empty=True)

    def as_env(self) -> dict[str, str]:
        """These settings as the variables that give them (for child processes built from the environment)."""
        found: dict[str, str] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None:
                found[env_name(field)] = str(value).lower() if isinstance(value, bool) else str(value)
        return found


def add_flags(
    parser: argparse.ArgumentParser, cls: type[BaseSettings], only: Collection[str] | None = None
) -> None:
    """`--field-name` for each field (or each of `only`; a bool default True becomes `--no-field-name`);
    a flag not given leaves the field to its variable, then its default. The command's settings are built
    from `cls` before its handler runs (`resolve`)."""
    parser.set_defaults(settings_class=cls)
    for name, field in cls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        if extra.get("variable_only") or (only is not None and name not in only):
            continue
        flag, variable = str(extra.get("flag") or name.replace("_", "-")), env_name(field)
        if field.annotation in (bool, "bool"):
            on = field.default is True
            parser.add_argument(
                f"--no-{flag}" if on else f"--{flag}",
                dest=name,
                action="store_false" if on else "store_true",
                default=argparse.SUPPRESS,
                help=f"{field.description} (${variable}={'false' if on else 'true'})",
            )
            continue
        parser.add_argument(
            f"--{flag}",
            dest=name,
            type=_FLAG_TYPES.get(field.annotation, _FLAG_TYPES.get(str(field.annotation), str)),
            default=argparse.SUPPRESS,
            help=f"{field.description} (${variable})",
        )


def settings_from(args: argparse.Namespace, cls: type[S]) -> S:
    """The role's settings: the flags given, then the environment, then the defaults."""
    return cls(**{name: getattr(args, name) for name in cls.model_fields if hasattr(args, name)})


def resolve(args: argparse.Namespace) -> None:
    """Build the command's settings (flags, then variables, then defaults) and put every field on `args`,
    so a variable that does not parse stops only the command that uses it, before it starts anything
    (cli.main reports the ValidationError as `error: VARIABLE: why`, exit 2)."""
    cls = getattr(args, "settings_class", None)
    if cls is not None:
        vars(args).update(settings_from(args, cls).model_dump())


def problems(exc: ValidationError) -> list[str]:
    """One `VARIABLE: why` line per refused setting."""
    return [f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()]


# --- roles -------------------------------------------------------------------------------------------
LOCAL_CONTROLLER = "http://127.0.0.1:21001"
LOCAL_WORKER = "http://127.0.0.1:21002"
_FASTCHAT_LOGS = "FastChat's own loggers' level (INFO logs prompts)"
_GRACEFUL = "seconds SIGTERM waits for streams in flight (keep below the ECS task's stopTimeout, 120)"
# A load balancer reuses its idle connections to a target for up to its idle timeout (ours: 300 s); a
# server that closes them sooner (uvicorn's default: 5 s) races it and the user gets a 502.
_KEEP_ALIVE = "seconds an idle client connection stays open (keep above the load balancer's idle timeout)"
DEFAULT_KEEP_ALIVE = 310
KeepAlive = Annotated[int, Field(ge=1, le=86_400)]


class ControllerSettings(RoleSettings):
    host: str = env("CONTROLLER_HOST", "127.0.0.1", "bind host")
    port: Port = env("CONTROLLER_PORT", 21001, "port")
    fastchat_log_level: str = env("FASTCHAT_LOG_LEVEL", "WARNING", _FASTCHAT_LOGS)


class WorkerSettings(RoleSettings):
    host: str = env("WORKER_HOST", "127.0.0.1", "bind host")
    port: Port = env("WORKER_PORT", 21002, "port")
    controller_address: str = env("CONTROLLER_ADDRESS", LOCAL_CONTROLLER, "FastChat controller URL")
    worker_address: str | None = env(
        "WORKER_ADDRESS", None, "URL the controller uses to reach this worker (default http://HOST:PORT)"
    )
    ssm_prefix: str = env("SSM_PREFIX", DEFAULT_PREFIX, "where the sync publishes")
    models_file: str | None = env(
        "MODELS_FILE", None, "serve a local registry JSON file (watched) instead of SSM"
    )
    poll_interval: Seconds = env("POLL_INTERVAL", 5.0, "seconds between SSM manifest checks")
    limit_concurrency: Count = env("WORKER_CONCURRENCY", 512, "concurrent streams per worker")
    heartbeat_interval: Seconds = env("HEARTBEAT_INTERVAL", 15.0, "seconds between controller heartbeats")
    read_timeout: Seconds = env("SAGEMAKER_READ_TIMEOUT", 120.0, "seconds to wait for the next token")
    first_token_timeout: Seconds = env(
        "SAGEMAKER_FIRST_TOKEN_TIMEOUT",
        60.0,
        "seconds from a request to its first token (call and retries included) before a timeout error",
    )
    failover_first_token_timeout: float = env(
        "FAILOVER_FIRST_TOKEN_TIMEOUT",
        10.0,
        "seconds a variant with another healthy one behind it gets for its first token before the "
        "request fails over (the last variant gets the full first-token timeout; 0: always the full one)",
        ge=0,
    )
    # The per-endpoint circuit breakers (rollout/breaker.py): closed -> open on either rule.
    breaker_consecutive_failures: int = env(
        "BREAKER_CONSECUTIVE_FAILURES", 5, "endpoint failures in a row that open its breaker", ge=1
    )
    breaker_error_rate: float = env(
        "BREAKER_ERROR_RATE",
        0.5,
        "error rate over the window (with at least the minimum sample) that opens a breaker",
        gt=0,
        le=1,
    )
    breaker_window: float = env("BREAKER_WINDOW", 30.0, "seconds of outcomes the error rate is over", gt=0)
    breaker_min_requests: int = env(
        "BREAKER_MIN_REQUESTS", 20, "outcomes in the window before the error rate can open a breaker", ge=1
    )
    breaker_cooldown: float = env(
        "BREAKER_COOLDOWN",
        10.0,
        "seconds an open breaker waits before letting one probe request through",
        gt=0,
    )
    unready_after: Seconds = env(
        "WORKER_UNREADY_AFTER",
        30.0,
        "/ready turns 503 when every concurrency slot was held this long with none given back",
    )
    register_worker: bool = env("WORKER_REGISTER", True, "do not register with a controller", "register")
    endpoint_check: bool = env(
        "ENDPOINT_CHECK",
        True,
        "let new or changed models take traffic without checking their endpoint first "
        "(DescribeEndpoint, and the probe of models with `probe: true`)",
    )
    endpoint_recheck: Seconds = env("ENDPOINT_RECHECK", 30.0, "seconds between checks of a refused candidate")
    rollout_metrics_table: str | None = env(
        "ROLLOUT_METRICS_TABLE",
        None,
        "DynamoDB table the worker adds per-minute outcome counts to for staged rollouts (empty: none)",
    )
    graceful_shutdown_seconds: int = env("GRACEFUL_SHUTDOWN_SECONDS", 110, _GRACEFUL)
    fastchat_log_level: str = env("FASTCHAT_LOG_LEVEL", "WARNING", _FASTCHAT_LOGS)


class ApiSettings(RoleSettings):
    host: str = env("API_HOST", "127.0.0.1", "bind host")
    port: Port = env("API_PORT", 8000, "port")
    controller_address: str = env("CONTROLLER_ADDRESS", LOCAL_CONTROLLER, "FastChat controller URL")
    api_keys: str | None = env("API_KEYS", None, "comma-separated keys")
    workers: Count = env("API_PROCESSES", 1, "API processes (uvicorn workers) when one core is not enough")
    max_n: Count = env("API_MAX_N", 4, "the largest `n` (choices per request) accepted")
    max_body_bytes: Count = env("API_MAX_BODY_BYTES", 4 * 1024 * 1024, "the largest request body accepted")
    worker_timeout: Seconds = env("API_WORKER_TIMEOUT", 130.0, "seconds to wait for the worker's next frame")
    graceful_shutdown_seconds: int = env("GRACEFUL_SHUTDOWN_SECONDS", 110, _GRACEFUL)
    keep_alive: KeepAlive = env("HTTP_KEEP_ALIVE_SECONDS", DEFAULT_KEEP_ALIVE, _KEEP_ALIVE)

    def key_list(self) -> tuple[str, ...]:
        return tuple(k.strip() for k in (self.api_keys or "").split(",") if k.strip())


class ArenaSettings(RoleSettings):
    """The votes store and the ratings (the web UI's arena, `leaderboard`, `votes export|import`)."""

    votes_table: str = env("VOTES_TABLE", DEFAULT_VOTES_TABLE, "arena votes table")
    counts_table: str = env("VOTE_COUNTS_TABLE", DEFAULT_COUNTS_TABLE, "arena vote counters table")
    min_votes: int = env("ARENA_MIN_VOTES", DEFAULT_MIN_VOTES, "votes below which a rating is provisional")


class WebSettings(ArenaSettings):
    host: str = env("WEB_HOST", "127.0.0.1", "bind host")
    port: Port = env("WEB_PORT", 8001, "port")
    controller_address: str = env("CONTROLLER_ADDRESS", LOCAL_CONTROLLER, "FastChat controller URL")
    worker_url: str = env(
        "WORKER_URL", LOCAL_WORKER, "the worker whose /model-set gives templates and descriptions"
    )
    concurrency: Count = env("WEB_CONCURRENCY", 64, "gradio queue concurrency")
    keep_alive: KeepAlive = env("HTTP_KEEP_ALIVE_SECONDS", DEFAULT_KEEP_ALIVE, _KEEP_ALIVE)
    vote_spool: str = env(
        "ARENA_VOTE_SPOOL",
        str(DEFAULT_VOTE_SPOOL),
        "votes wait here until the votes table has them (keep it on a persistent disk)",
    )
    vote_spool_dir: str | None = env(
        "ARENA_VOTE_SPOOL_DIR",
        None,
        "a directory every web process shares (e.g. EFS): each spools to its own file there and adopts"
        " the votes of processes that are gone (set: ARENA_VOTE_SPOOL is not used)",
    )
    max_votes_per_voter: int = env(
        "ARENA_MAX_VOTES_PER_VOTER_PER_DAY",
        DEFAULT_MAX_VOTES_PER_VOTER_PER_DAY,
        "rated votes per voter key per UTC day; later ones are kept, flagged over_cap (0: no cap)",
    )
    voter_salt: str | None = env(
        "ARENA_VOTER_SALT", None, "salt of the voter keys (default: random per process)"
    )
    keep_conversations: bool = env(
        "ARENA_KEEP_CONVERSATIONS", False, "keep each vote's conversation text with the vote"
    )
    title: str | None = env("ARENA_TITLE", None, "the page title (markdown)")
    title_file: str | None = env("ARENA_TITLE_FILE", None, "a file holding the page title")
    intro: str | None = env("ARENA_INTRO", None, "the text under the title (markdown)")
    intro_file: str | None = env("ARENA_INTRO_FILE", None, "a file holding the intro")
    terms: str | None = env("ARENA_TERMS", None, "the terms shown before a battle (markdown)")
    terms_file: str | None = env("ARENA_TERMS_FILE", None, "a file holding the terms")
    conv_log_dir: str | None = env(
        "FASTCHAT_CONV_LOG_DIR", None, "keep FastChat's conversation logs (prompts included) in this folder"
    )
    fastchat_log_level: str = env("FASTCHAT_LOG_LEVEL", "WARNING", _FASTCHAT_LOGS)


class StateDirSettings(RoleSettings):
    """The local stack's state folder (`local_state`): `up` keeps its registry, SSM history, votes spool
    and traces there, and `traces` finds them there, so two stacks on one machine share none of them."""

    state_dir: str | None = env(
        "SFC_STATE_DIR",
        None,
        "the local stack's state folder: registry, SSM history, votes spool, traces "
        "(default $XDG_STATE_HOME/sagemaker-fastchat, i.e. ~/.local/state/sagemaker-fastchat)",
    )
    xdg_state_home: str | None = env("XDG_STATE_HOME", None, "the XDG state folder", variable_only=True)

    def state_folder(self) -> Path:
        """--state-dir, else $SFC_STATE_DIR, else the XDG default."""
        return local_state.state_folder(self.state_dir, self.xdg_state_home)


class TracesSettings(StateDirSettings):
    file: str | None = env(
        "XRAY_TRACES_FILE", None, "collector file (default: traces.jsonl in the local stack's state folder)"
    )

    def traces_file(self) -> Path:
        return Path(self.file).expanduser() if self.file else self.state_folder() / local_state.TRACES_FILE


class ModelsSettings(RoleSettings):
    """`models ...`: the registry and where the sync publishes (boto3 finds AWS by its own configuration)."""

    table: str = env("REGISTRY_TABLE", DEFAULT_TABLE, "registry table")
    ssm_prefix: str = env("SSM_PREFIX", DEFAULT_PREFIX, "where the sync publishes")
    worker_url: str = env(
        "WORKER_URL",
        LOCAL_WORKER,
        "a worker to show the refusals of (list) or to wait for (wait), when reachable",
    )
    metrics_table: str = env(
        "ROLLOUT_METRICS_TABLE", DEFAULT_METRICS_TABLE, "the rollout's outcome counts table"
    )
    endpoint_check: bool = env(
        "ROLLOUT_ENDPOINT_CHECK",
        True,
        "start the rollout without checking that --endpoint exists and is InService (DescribeEndpoint)",
    )


class MotoSettings(RoleSettings):
    port: Port = env("MOTO_PORT", 5000, "port")
    region: str = env("AWS_REGION", "us-east-1", "the region whose state is kept")


class LocalStackSettings(StateDirSettings):
    """`up`: the whole stack on one machine (each child gets its own role's flags and variables)."""

    host: str = env("BIND_HOST", "127.0.0.1", "bind host of the API and UI (the rest stays on loopback)")
    api_port: StackPort = env("API_PORT", 8000, "OpenAI API port")
    web_port: StackPort = env("WEB_PORT", 8001, "web UI port")
    controller_port: StackPort = env("CONTROLLER_PORT", 21001, "controller port")
    worker_port: StackPort = env("WORKER_PORT", 21002, "worker port")
    moto_port: StackPort = env("MOTO_PORT", 5000, "moto port")
    standin_port: StackPort = env("STANDIN_PORT", 8080, "SageMaker stand-in port")
    xray_port: StackPort = env("XRAY_PORT", 2000, "X-Ray collector port (UDP)")
    region: str = env("AWS_REGION", "us-east-1", "region")
    table: str = env("REGISTRY_TABLE", DEFAULT_TABLE, "registry table")
    ssm_prefix: str = env("SSM_PREFIX", DEFAULT_PREFIX, "SSM prefix")
    poll_interval: Seconds = env("POLL_INTERVAL", 1.0, "seconds between the worker's SSM checks")
    token_rate: NonNegative = env("DEMO_TOKEN_RATE", 20.0, "demo tokens per second per stream, 0 = unlimited")
    # Variables only: credentials (not for a command line), passed-through choices.
    access_key_id: str = env("LOCAL_AWS_ACCESS_KEY_ID", "local", "moto's access key", variable_only=True)
    secret_access_key: str = env(
        "LOCAL_AWS_SECRET_ACCESS_KEY", "local", "moto's secret key", variable_only=True
    )
    sync_endpoint_check: bool = env(
        "SYNC_ENDPOINT_CHECK", True, "the sync's DescribeEndpoint check", variable_only=True
    )
    rollout_metrics_table: str = env(
        "ROLLOUT_METRICS_TABLE",
        DEFAULT_METRICS_TABLE,
        "the rollout's outcome-counts table (workers add, the step runner reads)",
        variable_only=True,
    )
    xray_sampling_rate: str = env(
        "XRAY_SAMPLING_RATE",
        "1",
        "passed to every child (locally every request is traced)",
        variable_only=True,
    )
