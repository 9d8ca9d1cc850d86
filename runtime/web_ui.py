"""FastChat's multi-tab web UI (direct chat, arena battle, arena side by side) with our shims applied.

FastChat's UI picks conversation templates by model name in its own process, so it asks the worker's
`/model-set` (cached for a few seconds) for each model's `conv_template` and description; descriptions
(the demo models say they are demos) appear in the UI's model list.
"""

from __future__ import annotations

import argparse
import functools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from runtime import arena_ui, fastchat_compat
from stores.votes import VoteRecorder
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


def prepare_ui(worker_url: str, tracer: Tracer) -> Any:
    """Import FastChat's UI torch-free with every shim in place; returns the UI module. `tracer` traces
    each answer (the shell builds it from its telemetry settings)."""
    info = LiveModelInfo(worker_url)
    module = fastchat_compat.apply_for_web(info.conv_template)
    propagation.patch_all()
    trace_bot_responses(tracer)
    info.models()  # registers the live models' descriptions before FastChat builds its model list
    return module


@dataclass(frozen=True)
class WebSetup:
    """What the page is built with (the shell's settings, reduced to what the runtime needs)."""

    controller_address: str
    min_votes: int
    votes: arena_ui.VoteSettings
    texts: arena_ui.PageTexts


def build_arena_demo(
    module: Any, setup: WebSetup, info: LiveModelInfo, store: Any, recorder: VoteRecorder
) -> Any:
    """FastChat's multi-tab page, built as its `__main__` would, with the arena's parts in place."""
    texts, settings, controller_address = setup.texts, setup.votes, setup.controller_address
    health = arena_ui.ModelHealth()
    page = arena_ui.ArenaPage(arena_ui.LeaderboardView(store, setup.min_votes), texts, info.models)

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
            battle_names=lambda name: battle_names(info.models().get(name, {}), name),
        )
    )
    # What FastChat's `__main__` sets before building (its `load_demo` reads these module globals).
    module.args = argparse.Namespace(
        controller_url=controller_address,
        model_list_mode="reload",
        register_api_endpoint_file=None,
        show_terms_of_use=False,
        multimodal=False,
        ga_id=None,
    )
    module.set_global_vars(controller_address, False)
    module.set_global_vars_named(False)
    module.set_global_vars_anony(False)
    module.models, module.all_models = module.get_model_list(controller_address, None, False)
    module.vl_models, _ = module.get_model_list(controller_address, None, True)
    demo = module.build_demo(module.models, module.vl_models, "arena", None)
    descriptions = fastchat_compat.finish_arena_page(demo, texts.title)
    with demo:
        gr_intro(texts)
    page.attach(demo, descriptions)
    page.refresh()  # loads plotly and numpy's solvers now, not on the first visitor's page load
    return demo


def battle_names(entry: dict[str, Any], name: str) -> list[str]:
    """What a model's answer must not show in a battle: its name and every endpoint serving it."""
    variants = entry.get("variants")
    endpoints = (
        [v.get("endpoint_name") for v in variants if isinstance(v, dict)]
        if isinstance(variants, list)
        else []
    )
    return [name, str(entry.get("endpoint_name") or ""), *(str(e) for e in endpoints if e)]


def keep_connections_open(seconds: int) -> None:
    """Gradio's server closes an idle connection after uvicorn's default 5 s and has no setting for it;
    behind a load balancer that reuses idle connections for longer (ours: 300 s) a request on one being
    closed gets a 502. Every gradio server built after this keeps them `seconds` (idempotent)."""
    from gradio import http_server

    init = getattr(http_server.Server.__init__, "_default_keep_alive", http_server.Server.__init__)

    def with_keep_alive(self: Any, config: Any, *args: Any, **kwargs: Any) -> None:
        config.timeout_keep_alive = seconds
        init(self, config, *args, **kwargs)

    with_keep_alive._default_keep_alive = init  # type: ignore[attr-defined]
    http_server.Server.__init__ = with_keep_alive  # type: ignore[method-assign]


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
