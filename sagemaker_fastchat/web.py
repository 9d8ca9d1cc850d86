"""`sagemaker-fastchat web`: FastChat's web UI (direct chat, arena battle, arena side by side) with our
shims, its votes store and its settings (runtime/web_ui.py builds the page)."""

from __future__ import annotations

import argparse
import os
import uuid
import warnings
from pathlib import Path
from typing import Any

import boto3
import structlog
from botocore.exceptions import BotoCoreError

from contract.items import InputError
from runtime import arena_ui, fastchat_compat
from runtime.web_ui import LiveModelInfo, WebSetup, build_arena_demo, keep_connections_open, prepare_ui
from sagemaker_fastchat.settings import WebSettings, add_flags, settings_from
from stores.votes import DynamoVotesStore, UnconfiguredVotesStore, VotesStore
from telemetry.settings import TelemetrySettings

log = structlog.get_logger("web")


def register(sub: Any) -> None:
    p = sub.add_parser("web", help="run FastChat's web UI: direct chat and arena (with our shims)")
    add_flags(p, WebSettings)
    p.set_defaults(handler=run_web)


def page_texts(settings: WebSettings) -> arena_ui.PageTexts:
    return arena_ui.PageTexts.read(
        title=(settings.title, settings.title_file),
        intro=(settings.intro, settings.intro_file),
        terms=(settings.terms, settings.terms_file),
    )


def run_web(args: argparse.Namespace) -> int:
    settings, telemetry = settings_from(args, WebSettings), TelemetrySettings()
    if settings.max_votes_per_voter < 0:
        raise InputError("--max-votes-per-voter: must be 0 (no cap) or more")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # FastChat 0.2.36 predates gradio 5's deprecations; its warnings say nothing an operator can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(tuples|not in the list of choices|found in sys.modules).*")
    telemetry.configure_logging()
    fastchat_compat.set_log_settings(settings.fastchat_log_level, settings.conv_log_dir)
    module = prepare_ui(settings.worker_url, telemetry.tracer("sagemaker-fastchat-web"))
    info = LiveModelInfo(settings.worker_url)
    store: VotesStore
    try:
        store = DynamoVotesStore(
            boto3.client("dynamodb"),
            settings.votes_table,
            settings.counts_table,
            settings.max_votes_per_voter,
        )
    except BotoCoreError as exc:  # e.g. no region: the UI still runs, votes wait in the spool
        log.error("votes_store_unconfigured", error=str(exc))
        store = UnconfiguredVotesStore(str(exc))
    shared = Path(settings.vote_spool_dir) if settings.vote_spool_dir else None
    try:
        recorder = arena_ui.start_recorder(store, Path(settings.vote_spool), shared)
    except OSError as exc:  # a spool that cannot be written would lose every vote: refuse to start
        where = f"ARENA_VOTE_SPOOL_DIR: {shared}" if shared else f"ARENA_VOTE_SPOOL: {settings.vote_spool}"
        raise InputError(f"{where}: cannot be used ({exc.strerror or exc})") from None
    setup = WebSetup(
        controller_address=settings.controller_address,
        min_votes=settings.min_votes,
        votes=arena_ui.VoteSettings(
            salt=settings.voter_salt or uuid.uuid4().hex, keep_text=settings.keep_conversations
        ),
        texts=page_texts(settings),
    )
    demo = build_arena_demo(module, setup, info, store, recorder)
    from starlette.middleware import Middleware

    keep_connections_open(settings.keep_alive)
    demo.queue(default_concurrency_limit=settings.concurrency, status_update_rate=10, api_open=False).launch(
        server_name=settings.host,
        server_port=settings.port,
        max_threads=200,
        app_kwargs={"middleware": [Middleware(fastchat_compat.StripThirdPartyTags)]},
    )
    recorder.close()
    return 0
