"""FastChat's multi-tab web UI (direct chat, arena battle, arena side by side) with our shims applied.

FastChat's UI picks conversation templates by model name in its own process, so it asks the worker's
`/model-set` (cached for a few seconds) for each model's `conv_template` and description; descriptions
(the demo models say they are demos) appear in the UI's model list.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import structlog
from botocore.exceptions import BotoCoreError

from arena.ratings import DEFAULT_MIN_VOTES
from arena.votes import DEFAULT_MAX_VOTES_PER_VOTER_PER_DAY
from contract.items import InputError
from runtime import arena_ui, fastchat_compat
from runtime.launch import controller_address_arg
from sagemaker_fastchat.options import env_option
from stores.votes import (
    DEFAULT_COUNTS_TABLE,
    DEFAULT_VOTES_TABLE,
    DynamoVotesStore,
    UnconfiguredVotesStore,
    VoteRecorder,
    VotesStore,
)
from telemetry import propagation
from telemetry.tracing import Tracer, current_span

log = structlog.get_logger("web")


class LiveModelInfo:
    """The worker's live model set as the UI process sees it (refreshed at most every `ttl` seconds)."""

    def __init__(self, worker_url: str, ttl: float = 3.0) -> None:
        self.worker_url = worker_url.rstrip("/")
        self.ttl = ttl
        self._models: dict[str, dict[str, Any]] = {}
        self.version: int | None = None  # the live model-set version
        self._fetched = 0.0
        self._lock = threading.Lock()

    def models(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._fetched > self.ttl:
                try:
                    state = httpx.get(f"{self.worker_url}/model-set", timeout=2).json()
                    self._models = {m["name"]: m for m in state.get("models", [])}
                    self.version = state.get("version")
                    self._register_descriptions()
                except (httpx.HTTPError, ValueError) as exc:
                    log.warning("model_set_unavailable", worker=self.worker_url, error=str(exc))
                self._fetched = time.monotonic()
            return self._models

    def conv_template(self, name: str) -> str | None:
        model = self.models().get(name)
        return model.get("conv_template") if model else None

    def _register_descriptions(self) -> None:
        from fastchat.model.model_registry import register_model_info

        for name, model in self._models.items():
            if model.get("description"):
                register_model_info([name], name, "", str(model["description"]))


def add_web_parser(sub: Any) -> None:
    p = sub.add_parser("web", help="run FastChat's web UI: direct chat and arena (with our shims)")
    env_option(p, "--host", "WEB_HOST", "127.0.0.1", "bind host")
    env_option(p, "--port", "WEB_PORT", 8001, "port")
    controller_address_arg(p)
    env_option(
        p,
        "--worker-url",
        "WORKER_URL",
        "http://127.0.0.1:21002",
        "the worker whose /model-set gives templates and descriptions",
    )
    env_option(p, "--concurrency", "WEB_CONCURRENCY", 64, "gradio queue concurrency")
    env_option(p, "--votes-table", "VOTES_TABLE", DEFAULT_VOTES_TABLE, "arena votes table")
    env_option(p, "--counts-table", "VOTE_COUNTS_TABLE", DEFAULT_COUNTS_TABLE, "arena vote counters table")
    env_option(
        p,
        "--vote-spool",
        "ARENA_VOTE_SPOOL",
        str(Path.home() / ".cache" / "sagemaker-fastchat" / "votes-spool.jsonl"),
        "votes wait here until the votes table has them (keep it on a persistent disk)",
    )
    env_option(
        p, "--min-votes", "ARENA_MIN_VOTES", DEFAULT_MIN_VOTES, "votes below which a rating is provisional"
    )
    env_option(
        p,
        "--max-votes-per-voter",
        "ARENA_MAX_VOTES_PER_VOTER_PER_DAY",
        DEFAULT_MAX_VOTES_PER_VOTER_PER_DAY,
        "rated votes per voter key per UTC day; later ones are kept, flagged over_cap (0: no cap)",
    )
    p.set_defaults(handler=run_web)


def prepare_ui(worker_url: str) -> Any:
    """Import FastChat's UI torch-free with every shim in place; returns the UI module."""
    info = LiveModelInfo(worker_url)
    module = fastchat_compat.apply_for_web(info.conv_template)
    propagation.patch_all()
    trace_bot_responses(Tracer("sagemaker-fastchat-web"))
    info.models()  # registers the live models' descriptions before FastChat builds its model list
    return module


def run_web(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # FastChat 0.2.36 predates gradio 5's deprecations; its warnings say nothing an operator can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(tuples|not in the list of choices|found in sys.modules).*")
    if args.max_votes_per_voter < 0:
        raise InputError("--max-votes-per-voter: must be 0 (no cap) or more")
    module = prepare_ui(args.worker_url)
    info = LiveModelInfo(args.worker_url)
    store: VotesStore
    try:
        store = DynamoVotesStore(
            boto3.client("dynamodb"), args.votes_table, args.counts_table, args.max_votes_per_voter
        )
    except BotoCoreError as exc:  # e.g. no region: the UI still runs, votes wait in the spool
        log.error("votes_store_unconfigured", error=str(exc))
        store = UnconfiguredVotesStore(str(exc))
    recorder = arena_ui.start_recorder(store, Path(args.vote_spool))
    settings = arena_ui.VoteSettings(
        salt=os.environ.get("ARENA_VOTER_SALT") or uuid.uuid4().hex,
        keep_text=os.environ.get("ARENA_KEEP_CONVERSATIONS", "") in ("1", "true", "yes"),
    )
    demo = build_arena_demo(module, args, info, store, recorder, settings)
    from starlette.middleware import Middleware

    demo.queue(default_concurrency_limit=args.concurrency, status_update_rate=10, api_open=False).launch(
        server_name=args.host,
        server_port=args.port,
        max_threads=200,
        app_kwargs={"middleware": [Middleware(fastchat_compat.StripThirdPartyTags)]},
    )
    recorder.close()
    return 0


def build_arena_demo(  # noqa: PLR0917
    module: Any,
    args: argparse.Namespace,
    info: LiveModelInfo,
    store: Any,
    recorder: VoteRecorder,
    settings: arena_ui.VoteSettings,
) -> Any:
    """FastChat's multi-tab page, built as its `__main__` would, with the arena's parts in place."""
    texts = arena_ui.PageTexts.from_env()
    health = arena_ui.ModelHealth()
    page = arena_ui.ArenaPage(arena_ui.LeaderboardView(store, args.min_votes), texts, info.models)

    def on_vote(tab: str, vote_type: str, states: list[Any], selectors: list[Any], request: Any) -> None:
        try:
            vote = arena_ui.build_vote(
                tab,
                vote_type,
                states,
                selectors,
                str(getattr(request, "session_hash", "") or ""),
                info.models(),
                info.version,
                settings,
            )
            if vote is not None:
                recorder.record(vote)
        except Exception as exc:  # a vote must never break the page
            log.error("vote_not_recorded", tab=tab, type=vote_type, error=str(exc))

    watch_answers(lambda state: health.answered(str(state.model_name), not arena_ui.state_failed(state)))
    fastchat_compat.apply_for_arena(
        fastchat_compat.ArenaHooks(
            on_vote=on_vote,
            battle_weight=arena_ui.battle_weight(info.models, health),
            build_about=page.build_about,
            build_leaderboard_tab=page.build_leaderboard_tab,
            battle_names=lambda name: [name, str(info.models().get(name, {}).get("endpoint_name") or "")],
        )
    )
    # What FastChat's `__main__` sets before building (its `load_demo` reads these module globals).
    module.args = argparse.Namespace(
        controller_url=args.controller_address,
        model_list_mode="reload",
        register_api_endpoint_file=None,
        show_terms_of_use=False,
        multimodal=False,
        ga_id=None,
    )
    module.set_global_vars(args.controller_address, False)
    module.set_global_vars_named(False)
    module.set_global_vars_anony(False)
    module.models, module.all_models = module.get_model_list(args.controller_address, None, False)
    module.vl_models, _ = module.get_model_list(args.controller_address, None, True)
    demo = module.build_demo(module.models, module.vl_models, "arena", None)
    descriptions = fastchat_compat.finish_arena_page(demo, texts.title)
    with demo:
        gr_intro(texts)
    page.attach(demo, descriptions)
    page.refresh()  # loads plotly and numpy's solvers now, not on the first visitor's page load
    return demo


def gr_intro(texts: arena_ui.PageTexts) -> None:
    import gradio as gr

    intro = gr.Markdown(f"# {texts.title}\n\n{texts.intro}", elem_id="arena_intro")
    parent = intro.parent
    if parent is not None:
        parent.children.insert(0, parent.children.pop())  # first on the page


def _wrap_bot_responses(marker: str, wrap: Callable[[Any], Callable[..., Iterator[Any]]]) -> None:
    """Replace each FastChat UI module's `bot_response` by `wrap(original)`, once per marker (markers
    travel with the function: functools.wraps copies them onto each wrapper)."""
    for name, module in list(sys.modules.items()):
        original = getattr(module, "bot_response", None) if name.startswith("fastchat.serve.") else None
        if original is None or getattr(original, marker, False):
            continue
        wrapped = functools.wraps(original)(wrap(original))
        setattr(wrapped, marker, True)
        module.bot_response = wrapped  # type: ignore[attr-defined]


def watch_answers(on_done: Callable[[Any], None]) -> None:
    """Call `on_done(state)` after each FastChat `bot_response` finishes (the model-health signal)."""

    def wrap(original: Any) -> Callable[..., Iterator[Any]]:
        def watched(state: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            yield from original(state, *args, **kwargs)
            try:
                on_done(state)
            except Exception as exc:
                log.warning("answer_watch_failed", error=str(exc))

        return watched

    _wrap_bot_responses("_watched", wrap)


def trace_bot_responses(tracer: Tracer) -> None:
    """One trace per model answering: FastChat's `bot_response` (called once per model, also by each
    arena tab) runs inside a segment, current while it calls the controller and the worker."""

    def wrap(original: Any) -> Callable[..., Iterator[Any]]:
        def traced(state: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
            span = tracer.begin("sagemaker-fastchat-web")
            if span is None:
                yield from original(state, *args, **kwargs)
                return
            span.annotate("model_name", getattr(state, "model_name", None))
            steps = original(state, *args, **kwargs)
            try:
                while True:
                    token = current_span.set(span)
                    try:
                        item = next(steps)
                    except StopIteration:
                        return
                    finally:
                        current_span.reset(token)
                    yield item
            finally:
                steps.close()
                span.end()

        return traced

    _wrap_bot_responses("_traced", wrap)
