"""FastChat's multi-tab web UI (direct chat, arena battle, arena side by side) with our shims applied.

FastChat's UI picks conversation templates by model name in its own process, so it asks the worker's
`/model-set` (cached for a few seconds) for each model's `conv_template` and description; descriptions
(the demo models say they are demos) appear in the UI's model list.
"""

from __future__ import annotations

import argparse
import functools
import os
import runpy
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import httpx
import structlog

from runtime import fastchat_compat
from runtime.launch import controller_address_arg
from sagemaker_fastchat.options import env_option
from telemetry import propagation
from telemetry.tracing import Tracer, current_span

log = structlog.get_logger("web")
UI_MODULE = "fastchat.serve.gradio_web_server_multi"


class LiveModelInfo:
    """The worker's live model set as the UI process sees it (refreshed at most every `ttl` seconds)."""

    def __init__(self, worker_url: str, ttl: float = 3.0) -> None:
        self.worker_url = worker_url.rstrip("/")
        self.ttl = ttl
        self._models: dict[str, dict[str, Any]] = {}
        self._fetched = 0.0
        self._lock = threading.Lock()

    def models(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            if time.monotonic() - self._fetched > self.ttl:
                try:
                    state = httpx.get(f"{self.worker_url}/model-set", timeout=2).json()
                    self._models = {m["name"]: m for m in state.get("models", [])}
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
    p.set_defaults(handler=run_web)


def prepare_ui(worker_url: str) -> Any:
    """Import FastChat's UI torch-free with every shim in place; returns the UI module."""
    fastchat_compat.prepare_fastchat_logging()
    fastchat_compat.enforce_chatbot_sanitizing()
    module = fastchat_compat.import_torch_free(UI_MODULE)
    fastchat_compat.complete_arena_send_outputs()
    fastchat_compat.prepare_fastchat_logging()  # modules imported just now
    fastchat_compat.reclaim_logging()
    fastchat_compat.redirect_conversation_logs()
    propagation.patch_all()
    trace_bot_responses(Tracer("sagemaker-fastchat-web"))
    info = LiveModelInfo(worker_url)
    info.models()  # registers the live models' descriptions before FastChat builds its model list
    fastchat_compat.install_live_template_adapter(info.conv_template)
    return module


def run_web(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    # FastChat 0.2.36 predates gradio 5's deprecations; its warnings say nothing an operator can act on.
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message=".*(tuples|not in the list of choices|found in sys.modules).*")
    prepare_ui(args.worker_url)
    sys.argv = [
        UI_MODULE,
        "--host",
        args.host,
        "--port",
        str(args.port),
        "--controller-url",
        args.controller_address,
        "--model-list-mode",
        "reload",
        "--concurrency-count",
        str(args.concurrency),
    ]
    # FastChat builds and launches the UI in its `__main__` block: run it as FastChat would, in-process,
    # on the modules our shims already prepared.
    runpy.run_module(UI_MODULE, run_name="__main__", alter_sys=False)
    return 0


def trace_bot_responses(tracer: Tracer) -> None:
    """One trace per model answering: FastChat's `bot_response` (called once per model, also by each
    arena tab) runs inside a segment, current while it calls the controller and the worker."""
    for name, module in list(sys.modules.items()):
        original = getattr(module, "bot_response", None) if name.startswith("fastchat.serve.") else None
        if original is None or getattr(original, "_traced", False):
            continue

        @functools.wraps(original)
        def traced(state: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Iterator[Any]:
            span = tracer.begin("sagemaker-fastchat-web")
            if span is None:
                yield from _original(state, *args, **kwargs)
                return
            span.annotate("model_name", getattr(state, "model_name", None))
            steps = _original(state, *args, **kwargs)
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

        traced._traced = True  # type: ignore[attr-defined]
        module.bot_response = traced  # type: ignore[attr-defined]
