"""Every FastChat compatibility shim, in one place (fschat 0.2.36; installed packages are never edited).

Each shim says what it fixes and why; each is tested through FastChat's real code paths (tests/unit/
test_fastchat_compat.py, test_arena_ui.py, tests/integration/test_arena_send.py). Callers never apply a
shim themselves: one entry point per role applies that role's shims in the order they need
(`apply_for_worker`, `apply_for_api`, `apply_for_controller`, `apply_for_web` then `apply_for_arena`,
`finish_arena_page`); each is idempotent (docs/design.md "FastChat shims").
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import logging
import os
import re
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

_STUBBED_ROOTS = ("torch", "transformers", "accelerate", "peft")


# --- Shim 1: FastChat's UI imports torch without using it -------------------------------------------
# `fastchat.model.model_adapter` (imported by the web UI modules and by `get_conversation_template`)
# imports torch and transformers at import time, though the UI and our workers never run a model, and
# PyPI's Linux torch is a multi-GB CUDA build. While that module is imported, stand-in modules answer
# `import torch` / `from transformers import X`; afterwards they are removed again, so any other code
# that probes for torch still sees that it is absent. A real torch, when installed, is used instead.
class _StubMeta(type):
    """Placeholder classes: any attribute is another placeholder; calling one with a single function
    returns the function (so `@torch.inference_mode()` decorators still define their functions)."""

    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return _stub(f"{cls.__name__}.{name}")

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and callable(args[0]) and not isinstance(args[0], _StubMeta):
            return args[0]
        return _stub(f"{cls.__name__}()")


def _stub(name: str) -> Any:
    return _StubMeta(name, (), {})


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        value = _stub(name)
        setattr(self, name, value)
        return value


class _StubFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target: Any = None) -> Any:
        if fullname.split(".", maxsplit=1)[0] in _STUBBED_ROOTS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_import_lock = threading.Lock()


@contextmanager
def _torch_stubs() -> Iterator[None]:
    if importlib.util.find_spec("torch") is not None:
        yield
        return
    finder = _StubFinder()
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in _STUBBED_ROOTS]:
            if isinstance(sys.modules[name], _StubModule):
                del sys.modules[name]


def import_torch_free(module: str) -> types.ModuleType:
    """Import a FastChat module that imports torch at import time (model_adapter, the UI modules)."""
    with _import_lock, _torch_stubs():
        return importlib.import_module(module)


# --- Shim 2: FastChat's logging: stdout/stderr takeover, log files, prompt text ------------------------
# FastChat's build_logger (called by every server module at import) replaces sys.stdout/sys.stderr with
# loggers, writes log files under LOGDIR (default: the current directory), and its UI and API loggers
# write prompts and outputs at INFO. Its loggers become plain standard-library loggers routed through our
# structlog pipeline, with no files, at FASTCHAT_LOG_LEVEL (default WARNING, so no prompt text is logged;
# set INFO to see FastChat's own request logs, prompts included).
_log_level = "WARNING"
_conv_log_dir = ""


def set_log_settings(level: str = "WARNING", conv_log_dir: str | None = None) -> None:
    """The shell's FASTCHAT_LOG_LEVEL and FASTCHAT_CONV_LOG_DIR, before the shims below run."""
    global _log_level, _conv_log_dir
    _log_level, _conv_log_dir = level.upper(), conv_log_dir or ""


def _plain_logger(logger_name: str, logger_filename: str = "") -> logging.Logger:
    logger = logging.getLogger(logger_name)
    logger.setLevel(_log_level)
    return logger


def _prepare_fastchat_logging() -> None:
    os.environ["LOGDIR"] = ""
    import fastchat.utils

    setattr(fastchat.utils, "build_logger", _plain_logger)  # noqa: B010
    for name, module in list(sys.modules.items()):  # modules imported before this shim bound the original
        if name.startswith("fastchat.") and hasattr(module, "build_logger"):
            setattr(module, "build_logger", _plain_logger)  # noqa: B010
        if name.startswith("fastchat.") and isinstance(getattr(module, "logger", None), logging.Logger):
            module.logger.setLevel(_log_level)


def _reclaim_logging() -> None:
    """Undo what an earlier-bound build_logger may have done to stdout/stderr, then configure ours again
    (with the process's settings, as the shell last gave them)."""
    from telemetry.logs import reconfigure_logging

    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    reconfigure_logging()


# --- Shim 2b: FastChat's web UI appends whole conversations to files ----------------------------------
# gradio_web_server (and the arena tabs) append every conversation, with prompts and outputs, to
# `<LOGDIR>/<date>-conv.json` (the current directory when LOGDIR is unset). Off by default; set
# FASTCHAT_CONV_LOG_DIR to keep them, in that folder.
def conversation_log_path() -> str:
    folder = _conv_log_dir
    if not folder:
        return os.devnull
    os.makedirs(folder, exist_ok=True)
    t = time.gmtime()
    return os.path.join(folder, f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}-conv.json")


def _redirect_conversation_logs() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("fastchat.serve.") and hasattr(module, "get_conv_log_filename"):
            setattr(module, "get_conv_log_filename", conversation_log_path)  # noqa: B010


# --- Shim 3: templates follow the live model set, in the API path and in the web UI ------------------
# FastChat's web UI picks a conversation template by model name itself (get_conversation_template), and
# `get_model_adapter` caches its answer per name forever. One adapter, inserted first, answers for
# every name: a model's `conv_template` from the live set when it has one, else FastChat's own choice.
TemplateLookup = Callable[[str], str | None]


def _install_live_template_adapter(lookup: TemplateLookup) -> None:
    model_adapter = import_torch_free("fastchat.model.model_adapter")
    from fastchat.conversation import Conversation, get_conv_template

    base = model_adapter.BaseModelAdapter

    class LiveModelSetAdapter(base):  # type: ignore[misc,valid-type]
        def match(self, model_path: str) -> bool:
            return True

        def get_default_conv_template(self, model_path: str) -> Conversation:
            name = lookup(model_path)
            if name:
                return get_conv_template(name)
            adapter = _matching_adapter(model_adapter, model_path, self)
            if adapter is not None:
                return adapter.get_default_conv_template(model_path)
            return neutral_conversation()  # FastChat's own fallback, one_shot, adds a canned conversation

    adapters = model_adapter.model_adapters
    adapters[:] = [a for a in adapters if type(a).__name__ != "LiveModelSetAdapter"]
    adapters.insert(0, LiveModelSetAdapter())
    model_adapter.get_model_adapter.cache_clear()


def _matching_adapter(model_adapter: Any, model_path: str, skip: Any = None) -> Any:
    """FastChat's adapter whose name matching recognises `model_path`, if any (not the generic base)."""
    basename = os.path.basename(os.path.normpath(model_path))
    for adapter in model_adapter.model_adapters:
        if adapter is skip or type(adapter).__name__ in ("BaseModelAdapter", "LiveModelSetAdapter"):
            continue
        if adapter.match(basename):
            return adapter
    return None


# FastChat's generic fallback template (`one_shot`) puts a canned example conversation (~560 tokens) in
# front of every prompt. A model FastChat does not recognise, with no `conv_template` set, gets plain
# "User: ... / Assistant:" turns instead (and a warning in `models put` / `models list`).
NEUTRAL_TEMPLATE = "plain"


def neutral_conversation() -> Any:
    from fastchat.conversation import Conversation, SeparatorStyle

    return Conversation(
        name=NEUTRAL_TEMPLATE,
        system_template="{system_message}",
        system_message="",
        roles=("User", "Assistant"),
        messages=[],
        sep_style=SeparatorStyle.ADD_COLON_SINGLE,
        sep="\n",
        stop_str="\nUser:",
    )


def template_recognised(model_name: str) -> bool:
    """Whether FastChat's name matching picks a template for this model name (else: the neutral one)."""
    model_adapter = import_torch_free("fastchat.model.model_adapter")
    return _matching_adapter(model_adapter, model_name) is not None


def conversation_template(model_name: str) -> Any:
    """FastChat's template for a model name, through the (live-set aware) adapter registry."""
    model_adapter = import_torch_free("fastchat.model.model_adapter")
    return model_adapter.get_conversation_template(model_name)


def known_conv_template(name: str) -> bool:
    from fastchat.conversation import conv_templates

    return name in conv_templates


# --- Shim 4: model output is shown as sanitized HTML ---------------------------------------------------
# FastChat's chat UI renders model output as markdown/HTML (FastChat issue #88: an open XSS). gradio 5's
# Chatbot sanitizes by default; this makes sure no FastChat tab turns that off, whatever it passes.
def _enforce_chatbot_sanitizing() -> None:
    import gradio as gr

    original = gr.Chatbot.__init__
    if getattr(original, "_sanitizing", False):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["sanitize_html"] = True
        original(self, *args, **kwargs)

    init._sanitizing = True  # type: ignore[attr-defined]
    gr.Chatbot.__init__ = init  # type: ignore[method-assign]


# --- Shim 5: the anonymous arena's Send button -------------------------------------------------------
# FastChat's anony arena wires `add_text` to the textbox's submit with 12 outputs (the last one its
# slow-model hint) but to the Send button with 11, so every battle started with Send made gradio warn
# "A function (add_text) returned too many output values". Once FastChat has built that tab, each
# `add_text` event whose outputs are a prefix of the widest one's gets the widest one's outputs. The
# builder is replaced in its own module too: the UI's `__main__` run imports it from there again.
def _complete_arena_send_outputs() -> None:
    from gradio.context import get_blocks_context

    anony = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    original = anony.build_side_by_side_ui_anony
    if getattr(original, "_outputs_completed", False):
        return

    def build(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        blocks = get_blocks_context()
        events = [f for f in blocks.fns.values() if f.fn is anony.add_text] if blocks is not None else []
        widest = max(events, key=lambda f: len(f.outputs), default=None)
        for event in events:
            if widest is not None and list(event.outputs) == list(widest.outputs)[: len(event.outputs)]:
                event.outputs = list(widest.outputs)
        return result

    build._outputs_completed = True  # type: ignore[attr-defined]
    anony.build_side_by_side_ui_anony = build  # type: ignore[attr-defined]
    for name in ("fastchat.serve.gradio_web_server_multi", "__main__"):
        module = sys.modules.get(name)
        if getattr(module, "build_side_by_side_ui_anony", None) is original:
            module.build_side_by_side_ui_anony = build  # type: ignore[union-attr]


# --- Shim 6: arena votes reach our votes store -------------------------------------------------------
# FastChat's vote handlers (the battle and side-by-side tabs' `vote_last_response`, direct chat's) only
# append a line to the conversation log, off by default (shim 2b), so votes were thrown away. Each is
# wrapped to hand the vote to `on_vote(tab, vote_type, states, selectors, request)` first; FastChat's own
# handler still runs (it yields the reveal of the battle's names).
VoteCallback = Callable[[str, str, list[Any], list[Any], Any], None]
VOTE_MODULES = {
    "fastchat.serve.gradio_block_arena_anony": "battle",
    "fastchat.serve.gradio_block_arena_named": "side_by_side",
    "fastchat.serve.gradio_web_server": "direct",
}


def _capture_votes(on_vote: VoteCallback) -> None:
    for name, tab in VOTE_MODULES.items():
        module = sys.modules.get(name)
        original = getattr(module, "vote_last_response", None)
        if module is None or original is None:
            continue
        original = getattr(original, "_fastchat_original", original)

        def wrapped(
            states: Any,
            vote_type: str,
            selectors: Any,
            request: Any,
            _tab: str = tab,
            _original: Any = original,
        ) -> Any:
            if _tab == "direct":
                on_vote(_tab, vote_type, [states], [selectors], request)
            else:
                on_vote(_tab, vote_type, list(states), list(selectors), request)
            return _original(states, vote_type, selectors, request)

        wrapped._fastchat_original = original  # type: ignore[attr-defined]
        setattr(module, "vote_last_response", wrapped)  # noqa: B010


# --- Shim 7: battles drawn from the live set, by our weights -------------------------------------------
# The battle tab draws pairs with LMSYS's own tables (sampling weights, boosted models, battle targets,
# an outage list, all naming public models). Its `get_battle_pair` now draws two different models from
# the live list FastChat loaded on page load, each with weight `weight(name)` (0: never), falling back to
# FastChat's behaviour (any two live models) when fewer than two have a weight.
def _replace_battle_sampling(weight: Callable[[str], float]) -> None:
    import random

    anony: Any = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    anony.BATTLE_TARGETS = {}
    anony.SAMPLING_BOOST_MODELS = []
    anony.SAMPLING_WEIGHTS = {}

    def get_battle_pair() -> tuple[str, str]:
        models = list(anony.models)
        weights = {m: max(0.0, float(weight(m))) for m in models}
        eligible = [m for m in models if weights[m] > 0]
        pool = eligible if len(eligible) >= 2 else models
        if len(pool) < 2:
            return (pool[0], pool[0]) if pool else ("", "")
        first = random.choices(pool, [weights[m] or 1.0 for m in pool])[0]
        rest = [m for m in pool if m != first]
        second = random.choices(rest, [weights[m] or 1.0 for m in rest])[0]
        return (first, second) if random.random() < 0.5 else (second, first)

    anony.get_battle_pair = get_battle_pair


# --- Shim 8: the operator's page, nothing from LMSYS or third-party hosts -------------------------------
# FastChat's page is LMSYS's public arena: its notices (links to lmarena's leaderboard, LMSYS texts), the
# About tab, sponsor logos from third-party hosts (`acknowledgment_md`), a script from a CDN in the page
# head, and a Leaderboard tab that needs LMSYS's result files. Texts and logos are emptied before the UI
# is built, `build_about` and `build_leaderboard_tab` are replaced by the caller's, and after the build
# the head script and FastChat's notices are removed (`_scrub_page`). The arena tabs' Share button needs
# that script (html2canvas, from a CDN), so it is hidden with it rather than left doing nothing.
SHARE_BUTTON = "📷  Share"


def _replace_page_parts(build_about: Callable[[], Any], build_leaderboard_tab: Callable[..., Any]) -> None:
    for name in VOTE_MODULES:
        module = sys.modules.get(name)
        if module is not None and hasattr(module, "acknowledgment_md"):
            setattr(module, "acknowledgment_md", "")  # noqa: B010
    multi: Any = sys.modules["fastchat.serve.gradio_web_server_multi"]
    multi.build_about = build_about
    multi.build_leaderboard_tab = build_leaderboard_tab


def _scrub_page(demo: Any, title: str) -> list[Any]:
    """Remove FastChat's notices, head script and the Share buttons that need it; return the model-
    description Markdown blocks (so the caller can fill them from the live set on every page load)."""
    import gradio as gr

    demo.head = ""
    demo.title = title
    descriptions = []
    for block in demo.blocks.values():
        if isinstance(block, gr.Markdown) and block.elem_id in ("notice_markdown", "ack_markdown"):
            if block.value:  # FastChat's notices (the battle tab's slow-model warning starts empty)
                block.value = ""
                block.visible = False
        elif isinstance(block, gr.Markdown) and block.elem_id == "model_description_markdown":
            descriptions.append(block)
        elif isinstance(block, gr.Button) and block.value == SHARE_BUTTON:
            block.visible = False
    return descriptions


# Gradio's own page template preconnects to Google Fonts and loads an iframe-resizer script from a CDN,
# and its default theme loads its fonts from Google Fonts: the page uses system fonts, and this ASGI
# middleware drops those tags from the page's HTML (every other response passes through untouched).
_THIRD_PARTY_TAGS = re.compile(
    rb'<link\s[^>]*rel="preconnect"[^>]*>'
    rb'|<script[^>]*src="https://[^"]*"[^>]*>\s*</script>',
    re.DOTALL,
)


def _local_fonts_theme() -> Any:
    import gradio as gr

    return gr.themes.Default(
        text_size=gr.themes.sizes.text_md,
        font=["ui-sans-serif", "system-ui", "sans-serif"],
        font_mono=["ui-monospace", "Consolas", "monospace"],
    )


def _use_theme(demo: Any, theme: Any) -> None:
    """Swap a built page's theme (FastChat builds it with gradio's default, Google-hosted fonts)."""
    demo.theme = theme
    demo.theme_css = theme._get_theme_css()
    demo.stylesheets = theme._stylesheets


class StripThirdPartyTags:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "GET" or scope.get("path", "/").rstrip("/"):
            await self.app(scope, receive, send)
            return
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: Any) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body"):
                return
            content = bytes(body)
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            if any(k.lower() == b"content-type" and v.startswith(b"text/html") for k, v in headers):
                content = _THIRD_PARTY_TAGS.sub(b"", content)
            headers.append((b"content-length", str(len(content)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": content})

        await self.app(scope, receive, capture)


# --- Shim 9: no model names itself in a battle ------------------------------------------------------
# A battle is anonymous until the vote, but an answer may give its model away (the demo models begin
# with their endpoint's name; real models often say who made them). FastChat's analysis drops such
# votes afterwards; here the battle tab's `bot_response` hides the model's own names (as `names(model)`
# lists them: its name, its endpoint) in the answer as it streams, so the vote stays anonymous. The side-
# by-side and direct-chat tabs, where names are shown anyway, are untouched.
HIDDEN_NAME = "[name hidden]"


def _hide_names_in_battles(names: Callable[[str], list[str]]) -> None:
    anony: Any = sys.modules["fastchat.serve.gradio_block_arena_anony"]
    original = getattr(anony.bot_response, "_unmasked", anony.bot_response)

    def masked(state: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        hidden = [n for n in names(str(state.model_name)) if n]
        pattern = re.compile("|".join(re.escape(n) for n in sorted(hidden, key=len, reverse=True)), re.I)
        for item in original(state, *args, **kwargs):
            message = state.conv.messages[-1] if state.conv.messages else None
            if hidden and message is not None and isinstance(message[1], str):
                text = pattern.sub(HIDDEN_NAME, message[1])
                if text != message[1]:
                    message[1] = text
                    yield (item[0], state.to_gradio_chatbot(), *item[2:])
                    continue
            yield item

    masked._unmasked = original  # type: ignore[attr-defined]
    anony.bot_response = masked


# --- Shim 10: the variant that answered reaches the vote -----------------------------------------------
# A model may be served by several endpoints (variants, README "Rollout"); our worker's last chunk of an
# answer names the one that answered (`endpoint`; an error chunk's `error.endpoint`), and FastChat's
# `bot_response` reads only `text` and `error_code`. Its stream iterator (looked up in its module on every
# answer) is wrapped to note that name on the conversation it streams for, so a vote on the answer names
# it (`answered_by`). A new answer (a new turn, a regeneration) starts unknown; the last chunk sets it.
ANSWERED_BY = "answered_by_endpoint"  # an attribute of our own on FastChat's Conversation
MAX_ENDPOINT_CHARS = 256


def _note_answering_endpoint() -> None:
    web: Any = sys.modules["fastchat.serve.gradio_web_server"]
    original = getattr(web.model_worker_stream_iter, "_unnoted", web.model_worker_stream_iter)

    def noted(conv: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        setattr(conv, ANSWERED_BY, "")
        for data in original(conv, *args, **kwargs):
            if isinstance(data, dict):
                error = data.get("error")
                endpoint = data.get("endpoint") or (
                    error.get("endpoint") if isinstance(error, dict) else None
                )
                if isinstance(endpoint, str) and endpoint:
                    setattr(conv, ANSWERED_BY, endpoint[:MAX_ENDPOINT_CHARS])
            yield data

    noted._unnoted = original  # type: ignore[attr-defined]
    web.model_worker_stream_iter = noted


def answered_by(state: Any) -> str:
    """The endpoint that answered a FastChat state's last answer ("" when unknown)."""
    value = getattr(getattr(state, "conv", None), ANSWERED_BY, "")
    return value if isinstance(value, str) else ""


# --- Shim 12: each web conversation keeps its own variant ----------------------------------------------
# The worker picks a model's variant per conversation: by the request's `conversation_id` when there is
# one, else by a hash of the first user turn (runtime/variants.py). FastChat's UI sends no id, so every
# conversation that opened with the same words ("hi") went to the same variant, skewing a rollout's split
# on common prompts. Each UI `State` already has a random `conv_id` (new per conversation, kept by
# regenerations); it is copied onto the state's conversation, and the stream iterator (FastChat's own
# request, rebuilt here with one field more) sends it as `conversation_id`. (FastChat replaces a state's
# conversation only on its image path, which this text-only page never takes; such a conversation would
# fall back to the first-turn key.)
CONVERSATION_ID = "sticky_conversation_id"  # an attribute of our own on FastChat's Conversation


def _send_conversation_ids() -> None:
    web: Any = sys.modules["fastchat.serve.gradio_web_server"]
    init = getattr(web.State.__init__, "_unstamped", web.State.__init__)

    def stamped(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        setattr(self.conv, CONVERSATION_ID, str(self.conv_id))

    stamped._unstamped = init  # type: ignore[attr-defined]
    web.State.__init__ = stamped

    def stream_iter(  # noqa: PLR0917 (FastChat's signature, called positionally by bot_response)
        conv: Any,
        model_name: str,
        worker_addr: str,
        prompt: str,
        temperature: float,
        repetition_penalty: float,
        top_p: float,
        max_new_tokens: int,
        images: list[Any],
    ) -> Iterator[Any]:
        gen_params: dict[str, Any] = {
            "model": model_name,
            "prompt": prompt,
            "temperature": temperature,
            "repetition_penalty": repetition_penalty,
            "top_p": top_p,
            "max_new_tokens": max_new_tokens,
            "stop": conv.stop_str,
            "stop_token_ids": conv.stop_token_ids,
            "echo": False,
        }
        web.logger.info(f"==== request ====\n{gen_params}")  # as FastChat's (shown at INFO only)
        conversation_id = getattr(conv, CONVERSATION_ID, "")
        if isinstance(conversation_id, str) and conversation_id:
            gen_params["conversation_id"] = conversation_id
        if len(images) > 0:
            gen_params["images"] = images
        response = web.requests.post(
            worker_addr + "/worker_generate_stream",
            headers=web.headers,
            json=gen_params,
            stream=True,
            timeout=web.WORKER_API_TIMEOUT,
        )
        for chunk in response.iter_lines(decode_unicode=False, delimiter=b"\0"):
            if chunk:
                yield json.loads(chunk.decode())

    # shim 10 wraps what is there: it applies after this one
    web.model_worker_stream_iter = stream_iter


# --- Shim 11: a vote click is never lost ---------------------------------------------------------------
# When both arena answers end, FastChat's `flash_buttons` toggles the vote buttons off and on four times,
# 0.3 s apart, to catch the eye; a click that lands while they are off does nothing, so the user's vote is
# silently dropped (on a loaded machine the off phases stretch). Both arena tabs now enable the buttons
# once, as the flash's last step does. The buttons stay off while the answers stream, as before.
def _steady_vote_buttons() -> None:
    web: Any = sys.modules["fastchat.serve.gradio_web_server"]

    def enable_buttons() -> list[Any]:
        return [web.enable_btn] * 6  # the tabs' btn_list: 4 votes, regenerate, clear

    for name in ("fastchat.serve.gradio_block_arena_named", "fastchat.serve.gradio_block_arena_anony"):
        sys.modules[name].flash_buttons = enable_buttons  # type: ignore[attr-defined]


# --- Shim 13: no "high traffic" headline in the web UI ------------------------------------------------
# FastChat's web UI answers "NETWORK ERROR DUE TO HIGH TRAFFIC. PLEASE REGENERATE OR REFRESH THIS PAGE."
# (`SERVER_ERROR_MSG`) when the controller knows no worker for the model or the worker connection fails,
# whatever the cause, so users blame load that is not there. Every FastChat server module holding that
# text under the name (imported by name, so patching fastchat.constants would miss them) gets a clear one.
NO_SERVER_MSG = (
    "No server is serving this model right now, or it could not be reached; try again in a moment."
)


def _plain_server_error_message() -> None:
    from fastchat.constants import SERVER_ERROR_MSG

    for name, module in list(sys.modules.items()):
        if (
            name.startswith("fastchat.serve.")
            and getattr(module, "SERVER_ERROR_MSG", None) == SERVER_ERROR_MSG
        ):
            module.SERVER_ERROR_MSG = NO_SERVER_MSG  # type: ignore[attr-defined]


# --- Entry points: one per role, each applying that role's shims in the order they need -------------------
def _import_with_our_logging(import_: Callable[[], types.ModuleType]) -> types.ModuleType:
    """Shim 2 around an import of FastChat modules: their loggers are ours before and after."""
    _prepare_fastchat_logging()
    module = import_()
    _prepare_fastchat_logging()  # loggers of the modules imported just now
    _reclaim_logging()
    return module


def apply_for_worker(templates: TemplateLookup) -> None:
    """Before a `BaseModelWorker` is built: FastChat's logging routed through ours (shim 2), and templates
    from the live set (`templates(name)`: a model's `conv_template` or None; shim 3)."""
    _import_with_our_logging(lambda: importlib.import_module("fastchat.serve.base_model_worker"))
    _install_live_template_adapter(templates)


def apply_for_controller() -> Any:
    """FastChat's controller module, imported with its logging routed through ours (shim 2)."""
    return _import_with_our_logging(lambda: importlib.import_module("fastchat.serve.controller"))


def apply_for_api() -> None:
    """Our OpenAI API uses only FastChat's conversation templates: our logging set-up (shim 2)."""
    _import_with_our_logging(lambda: importlib.import_module("fastchat.conversation"))


UI_MODULE = "fastchat.serve.gradio_web_server_multi"


def apply_for_web(templates: TemplateLookup) -> Any:
    """FastChat's multi-tab UI module, imported torch-free (shim 1) with sanitized chat output (4), its
    logging routed through ours and no conversation files (2, 2b), the arena's Send button fixed (5),
    templates from the live set (3) and a plain message instead of "high traffic" (13). The arena's own
    parts follow with `apply_for_arena`."""
    _enforce_chatbot_sanitizing()
    module = _import_with_our_logging(lambda: import_torch_free(UI_MODULE))
    _complete_arena_send_outputs()
    _redirect_conversation_logs()
    _install_live_template_adapter(templates)
    _plain_server_error_message()
    return module


@dataclass(frozen=True)
class ArenaHooks:
    """What the arena's shims call back: votes (shim 6), battle weights (7), the operator's About and
    Leaderboard tabs (8), each model's names to hide in battles (9)."""

    on_vote: VoteCallback
    battle_weight: Callable[[str], float]
    build_about: Callable[[], Any]
    build_leaderboard_tab: Callable[..., Any]
    battle_names: Callable[[str], list[str]]


def apply_for_arena(hooks: ArenaHooks) -> None:
    """After `apply_for_web` and before the page is built: shims 6 to 12. Wrap FastChat's
    `bot_response` (tracing, health) before this: shim 9 wraps whatever is there."""
    web = sys.modules.get("fastchat.serve.gradio_web_server")
    if getattr(web, "get_conv_log_filename", None) is not conversation_log_path:  # set by apply_for_web
        raise RuntimeError("apply_for_arena needs apply_for_web first (FastChat's UI modules)")
    _capture_votes(hooks.on_vote)
    _replace_battle_sampling(hooks.battle_weight)
    _replace_page_parts(hooks.build_about, hooks.build_leaderboard_tab)
    _hide_names_in_battles(hooks.battle_names)
    _send_conversation_ids()
    _note_answering_endpoint()
    _steady_vote_buttons()


def finish_arena_page(demo: Any, title: str) -> list[Any]:
    """After the page is built (shim 8): FastChat's notices and head script removed, system fonts; returns
    the model-description blocks for the caller to fill from the live set."""
    descriptions = _scrub_page(demo, title)
    _use_theme(demo, _local_fonts_theme())
    return descriptions
