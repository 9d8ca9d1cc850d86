"""Every FastChat compatibility shim, in one place (fschat 0.2.36; installed packages are never edited).

Each shim says what it fixes and why; each is tested through FastChat's real code paths
(tests/integration/test_fastchat_compat.py).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import logging
import os
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
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
def _plain_logger(logger_name: str, logger_filename: str = "") -> logging.Logger:
    logger = logging.getLogger(logger_name)
    logger.setLevel(os.environ.get("FASTCHAT_LOG_LEVEL", "WARNING").upper())
    return logger


def prepare_fastchat_logging() -> None:
    os.environ["LOGDIR"] = ""
    import fastchat.utils

    setattr(fastchat.utils, "build_logger", _plain_logger)  # noqa: B010
    for name, module in list(sys.modules.items()):  # modules imported before this shim bound the original
        if name.startswith("fastchat.") and hasattr(module, "build_logger"):
            setattr(module, "build_logger", _plain_logger)  # noqa: B010
        if name.startswith("fastchat.") and isinstance(getattr(module, "logger", None), logging.Logger):
            module.logger.setLevel(os.environ.get("FASTCHAT_LOG_LEVEL", "WARNING").upper())


def reclaim_logging() -> None:
    """Undo what an earlier-bound build_logger may have done to stdout/stderr, then configure ours."""
    from contract.logs import configure_logging

    sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    configure_logging()


# --- Shim 2b: FastChat's web UI appends whole conversations to files ----------------------------------
# gradio_web_server (and the arena tabs) append every conversation, with prompts and outputs, to
# `<LOGDIR>/<date>-conv.json` (the current directory when LOGDIR is unset). Off by default; set
# FASTCHAT_CONV_LOG_DIR to keep them, in that folder.
def conversation_log_path() -> str:
    folder = os.environ.get("FASTCHAT_CONV_LOG_DIR", "")
    if not folder:
        return os.devnull
    os.makedirs(folder, exist_ok=True)
    t = time.gmtime()
    return os.path.join(folder, f"{t.tm_year}-{t.tm_mon:02d}-{t.tm_mday:02d}-conv.json")


def redirect_conversation_logs() -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("fastchat.serve.") and hasattr(module, "get_conv_log_filename"):
            setattr(module, "get_conv_log_filename", conversation_log_path)  # noqa: B010


# --- Shim 3: templates follow the live model set, in the API path and in the web UI ------------------
# FastChat's web UI picks a conversation template by model name itself (get_conversation_template), and
# `get_model_adapter` caches its answer per name forever. One adapter, inserted first, answers for
# every name: a model's `conv_template` from the live set when it has one, else FastChat's own choice.
TemplateLookup = Callable[[str], str | None]


def install_live_template_adapter(lookup: TemplateLookup) -> None:
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
def enforce_chatbot_sanitizing() -> None:
    import gradio as gr

    original = gr.Chatbot.__init__
    if getattr(original, "_sanitizing", False):
        return

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["sanitize_html"] = True
        original(self, *args, **kwargs)

    init._sanitizing = True  # type: ignore[attr-defined]
    gr.Chatbot.__init__ = init  # type: ignore[method-assign]
