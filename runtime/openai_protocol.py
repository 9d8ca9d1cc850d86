"""OpenAI's HTTP API <-> FastChat's worker protocol, as pure translation (no I/O; runtime/openai_api.py
does the calls).

In: a request body is validated into a `ChatRequest` / `CompletionRequest` (every refusal is an
`ApiError` naming the parameter, OpenAI's 400 `invalid_request_error`), then turned into the worker's
generation parameters (`worker_params`): the prompt built with the model's FastChat conversation template,
plus the OpenAI-format `messages` for configs that map them. Out: FastChat's NUL-separated frames, each
carrying the cumulative `text`, become OpenAI chunks and responses; a frame's `error_code` (and, from our
worker, its `error` object) becomes OpenAI's error envelope with its HTTP status.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastchat.constants import SERVER_ERROR_MSG, ErrorCode
from fastchat.conversation import Conversation, SeparatorStyle

from contract.chunk import error_chunk
from contract.tokens import approx_token_count

MAX_STOP = 4  # OpenAI's limit
MAX_MESSAGES = 4096
MAX_TOP_LOGPROBS = 20
MAX_COMPLETION_LOGPROBS = 5
DEFAULT_MAX_N = 4
DEFAULT_MAX_TOKENS_CAP = 1 << 20  # a bound for any model; the model's context length bounds it first
RETRY_AFTER_SECONDS = 1


# --- errors -----------------------------------------------------------------------------------------
class ApiError(Exception):
    """An OpenAI error response: status, and the envelope's message, type, param and code."""

    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_SECONDS)} if self.status == 429 else {}

    def event(self) -> bytes:
        """The error as a server-sent event inside a stream (OpenAI clients raise it)."""
        return b"data: " + orjson.dumps(self.body()) + b"\n\n"


def invalid(param: str, message: str, code: str | None = None) -> ApiError:
    return ApiError(400, message, "invalid_request_error", param, code)


MAX_NAME_SHOWN = 100  # an unknown model's name is echoed at most this long (the body may hold megabytes)


def model_not_found(model: str) -> ApiError:
    shown = (
        model if len(model) <= MAX_NAME_SHOWN else f"{model[:MAX_NAME_SHOWN]}... ({len(model):,} characters)"
    )
    return ApiError(
        404,
        f"The model `{shown}` does not exist or is not served now.",
        "invalid_request_error",
        "model",
        "model_not_found",
    )


def not_supported(param: str, what: str) -> ApiError:
    return invalid(param, f"{what} is not supported by this server.", "unsupported_parameter")


# FastChat's worker error codes (fastchat.constants.ErrorCode) -> status, type, code. Any FastChat
# worker sends these; our worker also sends an `error` object whose `kind` is more precise.
_BY_CODE: dict[int, tuple[int, str, str]] = {
    ErrorCode.VALIDATION_TYPE_ERROR: (400, "invalid_request_error", "invalid_value"),
    ErrorCode.INVALID_AUTH_KEY: (401, "invalid_request_error", "invalid_api_key"),
    ErrorCode.INCORRECT_AUTH_KEY: (401, "invalid_request_error", "invalid_api_key"),
    ErrorCode.NO_PERMISSION: (403, "invalid_request_error", "permission_denied"),
    ErrorCode.INVALID_MODEL: (404, "invalid_request_error", "model_not_found"),
    ErrorCode.PARAM_OUT_OF_RANGE: (400, "invalid_request_error", "invalid_value"),
    ErrorCode.CONTEXT_OVERFLOW: (400, "invalid_request_error", "context_length_exceeded"),
    ErrorCode.RATE_LIMIT: (429, "rate_limit_error", "rate_limit_exceeded"),
    ErrorCode.QUOTA_EXCEEDED: (429, "rate_limit_error", "insufficient_quota"),
    ErrorCode.ENGINE_OVERLOADED: (503, "server_error", "overloaded"),
    ErrorCode.CONTROLLER_NO_WORKER: (503, "server_error", "no_worker"),
    ErrorCode.CONTROLLER_WORKER_TIMEOUT: (504, "server_error", "timeout"),
}
_BY_KIND: dict[str, tuple[int, str, str]] = {
    "throttled": (429, "rate_limit_error", "rate_limit_exceeded"),
    "timeout": (504, "server_error", "timeout"),
    "endpoint_error": (502, "server_error", "endpoint_error"),
    "unavailable": (503, "server_error", "endpoint_unavailable"),  # missing, not ready, unreachable
    "not_found": (404, "invalid_request_error", "model_not_found"),  # not in the worker's live set
    "invalid_request": (400, "invalid_request_error", "invalid_value"),
    "internal": (500, "server_error", "internal_error"),  # the worker itself failed (its log says why)
}


def clean_message(text: str) -> str:
    """A worker's error text without FastChat's alarming headline ("NETWORK ERROR DUE TO HIGH
    TRAFFIC...", which FastChat puts in front of every error whatever its cause)."""
    text = text.replace(SERVER_ERROR_MSG, "").strip()
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text or "the model worker reported an error"


def worker_error(frame: Mapping[str, Any], model: str, where: str) -> ApiError:
    """The OpenAI error for a worker frame with a non-zero `error_code`. `where` names the endpoint (our
    worker) or the worker address (any other FastChat worker)."""
    code = frame.get("error_code")
    detail = frame.get("error") if isinstance(frame.get("error"), Mapping) else {}
    assert isinstance(detail, Mapping)
    text = clean_message(str(frame.get("text") or ""))
    kind = detail.get("kind")
    if isinstance(kind, str) and kind in _BY_KIND:
        status, type_, code_name = _BY_KIND[kind]
    elif isinstance(code, int) and code in _BY_CODE:
        status, type_, code_name = _BY_CODE[code]
    else:
        status, type_, code_name = 502, "server_error", "endpoint_error"
    # Our worker's messages begin "model NAME: ..." (contract.chunk.error_chunk); any other worker's get
    # that prefix here (a name merely inside the text, "m" in "out of memory", does not count).
    if not text.startswith((f"model {model}:", f"model {model} (")):
        text = f"model {model} ({where}): {text}"
    param = detail.get("param") if isinstance(detail.get("param"), str) else None
    return ApiError(status, text, type_, param, code_name)


def worker_unreachable(model: str, where: str, why: str) -> ApiError:
    return ApiError(
        503,
        f"model {model}: its worker ({where}) cannot be reached: {why}",
        "server_error",
        None,
        "worker_unavailable",
    )


def worker_timeout(model: str, where: str, seconds: float) -> ApiError:
    return ApiError(
        504, f"model {model} ({where}) sent nothing for {seconds:g} s", "server_error", None, "timeout"
    )


# --- request validation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Limits:
    max_n: int = DEFAULT_MAX_N
    max_tokens: int = DEFAULT_MAX_TOKENS_CAP


@dataclass(frozen=True)
class Sampling:
    """What chat and completion requests share."""

    model: str
    stream: bool = False
    include_usage: bool = False
    n: int = 1
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    repetition_penalty: float | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    logprobs: bool = False
    top_logprobs: int = 0
    max_tokens_param: str = "max_tokens"  # the key that set max_tokens (chat: or max_completion_tokens)


@dataclass(frozen=True)
class ChatRequest(Sampling):
    messages: tuple[tuple[str, str], ...] = ()  # (role, text); `developer` is `system`


@dataclass(frozen=True)
class CompletionRequest(Sampling):
    prompt: str = ""


# Parameters refused with a 400 (silently ignoring them would change what the caller gets).
_REFUSED = {
    "tools": "tools (function calling)",
    "tool_choice": "tool_choice (function calling)",
    "functions": "functions (function calling)",
    "function_call": "function_call (function calling)",
    "parallel_tool_calls": "parallel_tool_calls (function calling)",
    "logit_bias": "logit_bias",
    "audio": "audio output",
    "modalities": "modalities other than text",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
    "suffix": "suffix",
}
# Accepted and without effect on generation.
_IGNORED = ("user", "metadata", "store", "service_tier", "reasoning_effort")
_SAMPLING_KEYS = (
    "model",
    "stream",
    "stream_options",
    "n",
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
    "logprobs",
)
_CHAT_KEYS = frozenset(
    (*_SAMPLING_KEYS, *_IGNORED, "messages", "max_completion_tokens", "top_logprobs", "response_format")
)
_COMPLETION_KEYS = frozenset((*_SAMPLING_KEYS, *_IGNORED, "prompt", "echo", "best_of"))
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _number(body: Mapping[str, Any], key: str, low: float, high: float) -> float | None:
    v = body.get(key)
    if v is None:
        return None
    if not _is_number(v) or not low <= v <= high:
        raise invalid(key, f"'{key}' must be a number from {low:g} to {high:g}.", "invalid_value")
    return float(v)


def _integer(body: Mapping[str, Any], key: str, low: int, high: int) -> int | None:
    v = body.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
        raise invalid(key, f"'{key}' must be a whole number from {low} to {high}.", "invalid_value")
    return v


def _boolean(body: Mapping[str, Any], key: str) -> bool:
    v = body.get(key)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise invalid(key, f"'{key}' must be a boolean.", "invalid_type")
    return v


def _stop(body: Mapping[str, Any]) -> tuple[str, ...]:
    v = body.get("stop")
    if v is None:
        return ()
    items = [v] if isinstance(v, str) else v
    if not isinstance(items, list) or len(items) > MAX_STOP or not all(isinstance(s, str) for s in items):
        raise invalid(
            "stop", f"'stop' must be a string or a list of at most {MAX_STOP} strings.", "invalid_value"
        )
    return tuple(s for s in items if s)


def _check_keys(body: Mapping[str, Any], allowed: frozenset[str]) -> None:
    for key, value in body.items():
        if key in _REFUSED:
            if value is not None:  # an explicit null means "not used" (some clients send them)
                raise not_supported(key, _REFUSED[key])
        elif key not in allowed:
            raise invalid(
                str(key)[:64], f"Unrecognized request argument supplied: {str(key)[:64]}", "unknown_parameter"
            )


def _sampling(body: Mapping[str, Any], limits: Limits, max_tokens_keys: tuple[str, ...]) -> dict[str, Any]:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        what = "is required" if model is None else f"must be a non-empty string, not {type(model).__name__}"
        raise invalid(
            "model",
            f"'model' {what}: the name of a served model (GET /v1/models).",
            "missing_required_parameter" if model is None else "invalid_type",
        )
    stream = _boolean(body, "stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise invalid("stream_options", "'stream_options' is only allowed when 'stream' is true.")
        if not isinstance(options, Mapping):
            raise invalid("stream_options", "'stream_options' must be an object.", "invalid_type")
        include_usage = _boolean(options, "include_usage")
    n = _integer(body, "n", 1, limits.max_n)
    max_tokens, max_tokens_param = None, max_tokens_keys[0]
    for key in max_tokens_keys:
        if (value := _integer(body, key, 1, limits.max_tokens)) is not None:
            max_tokens, max_tokens_param = value, key
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise invalid("seed", "'seed' must be an integer.", "invalid_type")
    return {
        "model": model,
        "stream": stream,
        "include_usage": include_usage,
        "n": n or 1,
        "max_tokens": max_tokens,
        "max_tokens_param": max_tokens_param,
        "temperature": _number(body, "temperature", 0, 2),
        "top_p": _number(body, "top_p", 0, 1),
        "top_k": _integer(body, "top_k", -1, 1 << 20),
        "repetition_penalty": _number(body, "repetition_penalty", 0, 10),
        "presence_penalty": _number(body, "presence_penalty", -2, 2),
        "frequency_penalty": _number(body, "frequency_penalty", -2, 2),
        "stop": _stop(body),
        "seed": seed,
    }


def _message_text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind != "text" or not isinstance(part.get("text"), str):
                shown = kind if isinstance(kind, str) else "non-text"
                raise invalid(
                    f"{where}.content[{j}].type",
                    f"'{where}.content[{j}]': {shown[:32]!r} content is not supported; only text parts are.",
                    "unsupported_content",
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise invalid(
        f"{where}.content", f"'{where}.content' must be a string or a list of text parts.", "invalid_type"
    )


def _messages(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise invalid(
            "messages",
            "'messages' must be a non-empty list of messages.",
            "missing_required_parameter" if value is None else "invalid_value",
        )
    if len(value) > MAX_MESSAGES:
        raise invalid("messages", f"'messages' holds more than {MAX_MESSAGES} messages.", "invalid_value")
    out = []
    for i, m in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(m, Mapping):
            raise invalid(where, f"'{where}' must be an object with 'role' and 'content'.", "invalid_type")
        role = m.get("role")
        if role not in _ROLES:
            shown = repr(role)[:40]
            raise invalid(
                f"{where}.role",
                f"'{where}.role' is {shown}; supported roles: system, developer, user, assistant.",
                "invalid_value",
            )
        for key in ("tool_calls", "function_call", "audio"):
            if m.get(key) is not None:
                raise not_supported(f"{where}.{key}", f"'{key}' in messages")
        out.append((_ROLES[role], _message_text(m.get("content"), where)))
    return tuple(out)


def parse_chat(body: Any, limits: Limits = Limits()) -> ChatRequest:
    """A validated chat request, or an ApiError naming the parameter (total: any JSON value)."""
    if not isinstance(body, Mapping):
        raise invalid("body", "The request body must be a JSON object.", "invalid_type")
    _check_keys(body, _CHAT_KEYS)
    fmt = body.get("response_format")
    if fmt is not None and (not isinstance(fmt, Mapping) or fmt.get("type") != "text"):
        raise not_supported("response_format", 'response_format other than {"type": "text"}')
    common = _sampling(body, limits, ("max_tokens", "max_completion_tokens"))
    logprobs = _boolean(body, "logprobs")
    top = _integer(body, "top_logprobs", 0, MAX_TOP_LOGPROBS) or 0
    if top and not logprobs:
        raise invalid("top_logprobs", "'top_logprobs' needs 'logprobs' set to true.")
    return ChatRequest(
        **common, logprobs=logprobs, top_logprobs=top, messages=_messages(body.get("messages"))
    )


def parse_completion(body: Any, limits: Limits = Limits()) -> CompletionRequest:
    """A validated (legacy) completion request, or an ApiError naming the parameter."""
    if not isinstance(body, Mapping):
        raise invalid("body", "The request body must be a JSON object.", "invalid_type")
    _check_keys(body, _COMPLETION_KEYS)
    if body.get("echo"):
        raise not_supported("echo", "echo")
    if body.get("best_of") not in (None, 1):
        raise not_supported("best_of", "best_of other than 1")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid(
            "prompt",
            "'prompt' must be a string (lists of prompts and token arrays are not supported).",
            "invalid_type",
        )
    common = _sampling(body, limits, ("max_tokens",))
    top = body.get("logprobs")
    if top is not None and (
        isinstance(top, bool) or not isinstance(top, int) or not 0 <= top <= MAX_COMPLETION_LOGPROBS
    ):
        raise invalid("logprobs", f"'logprobs' must be a whole number from 0 to {MAX_COMPLETION_LOGPROBS}.")
    return CompletionRequest(**common, logprobs=top is not None, top_logprobs=top or 0, prompt=prompt)


# --- what the model's endpoint config can carry ------------------------------------------------------
# Parameter -> the canonical request field that carries it to the endpoint (request.mapping), and its
# neutral values: OpenAI's default (FastChat's for top_k and repetition_penalty), which means the same as
# leaving the parameter out, so SDKs and frameworks that send defaults pass whatever the config maps.
# `stop` is not here: the worker enforces stop strings itself, mapped or not; `n` is the API's own.
_CARRIED: tuple[tuple[str, str, tuple[float, ...]], ...] = (
    ("max_tokens", "max_new_tokens", ()),
    ("temperature", "temperature", (1.0,)),
    ("top_p", "top_p", (1.0,)),
    ("top_k", "top_k", (-1, 0)),  # <= 0 is "off"
    ("repetition_penalty", "repetition_penalty", (1.0,)),
    ("presence_penalty", "presence_penalty", (0.0,)),
    ("frequency_penalty", "frequency_penalty", (0.0,)),
    ("seed", "seed", ()),
)


def _unmapped(model: str, param: str, why: str) -> ApiError:
    return invalid(param, f"model {model}'s endpoint config {why}.", "unsupported_parameter")


def check_mapped(
    req: Sampling, request_fields: frozenset[str] | None, response_fields: frozenset[str] | None
) -> None:
    """Refuse (400 naming it) a parameter set to a non-neutral value that the model's endpoint config
    does not map, so it would be silently dropped. The fields are what our worker publishes per model
    (mapped by every variant that can answer); None (any other FastChat worker): nothing is refused."""
    if request_fields is None or response_fields is None:
        return
    for attr, field_name, neutral in _CARRIED:
        value = getattr(req, attr)
        if value is not None and value not in neutral and field_name not in request_fields:
            if attr == "max_tokens":
                param = req.max_tokens_param
                why = f"does not map `{field_name}` (what `{param}` sets); remove `{param}` or add "
                raise _unmapped(req.model, param, f"{why}`{field_name}` to request.mapping")
            raise _unmapped(req.model, attr, f"does not map `{attr}`; remove it or add it to request.mapping")
    if req.logprobs and "logprobs" not in response_fields:
        why = "maps no `logprobs` in response.mapping; remove `logprobs` or add it to response.mapping"
        raise _unmapped(req.model, "logprobs", why)
    # Alternatives come only from an endpoint asked for them (OpenAI-style `top_logprobs`) that returns
    # them in the mapped `logprobs` object; TGI's `token.logprob` is one number. (A legacy completion's
    # `logprobs: N` is also its on-switch, so it is not refused: its top_logprobs stay empty; README.)
    if isinstance(req, ChatRequest) and req.top_logprobs and "top_logprobs" not in request_fields:
        why = (
            "cannot supply alternative tokens: it does not map `top_logprobs`; remove it, or add it to "
            "request.mapping for an endpoint that returns them in the mapped `logprobs`"
        )
        raise _unmapped(req.model, "top_logprobs", why)


# --- worker parameters ----------------------------------------------------------------------------
def conversation_from_worker(data: Mapping[str, Any]) -> Conversation:
    """A Conversation from a worker's `/worker_get_conv_template` answer (FastChat's dataclass as a dict)."""
    return Conversation(
        name=data["name"],
        system_template=data.get("system_template", "{system_message}"),
        system_message=data.get("system_message", ""),
        roles=tuple(data.get("roles", ("USER", "ASSISTANT"))),
        messages=[],
        offset=0,
        sep_style=SeparatorStyle(data.get("sep_style", SeparatorStyle.ADD_COLON_SINGLE)),
        sep=data.get("sep", "\n"),
        sep2=data.get("sep2"),
        stop_str=data.get("stop_str"),
        stop_token_ids=data.get("stop_token_ids"),
    )


def chat_prompt(template: Conversation, messages: tuple[tuple[str, str], ...]) -> str:
    """The prompt text, built with the model's FastChat template (as FastChat's API server does)."""
    conv = template.copy()
    conv.messages = []
    for role, text in messages:
        if role == "system":
            conv.set_system_message(text)
        else:
            conv.append_message(conv.roles[0] if role == "user" else conv.roles[1], text)
    conv.append_message(conv.roles[1], None)
    return str(conv.get_prompt())


def max_new_tokens(req: Sampling, prompt: str, context_length: int | None) -> int | None:
    """FastChat's length check with a local token estimate (no /count_token round trip): the request's
    max_tokens, at most what the context leaves after the prompt."""
    if context_length is None:
        return req.max_tokens
    left = context_length - approx_token_count(prompt)
    if left <= 0:
        raise invalid(
            "messages" if isinstance(req, ChatRequest) else "prompt",
            f"This model's maximum context length is {context_length} tokens; the prompt is about "
            f"{context_length - left} tokens.",
            "context_length_exceeded",
        )
    return min(req.max_tokens or left, left)


def worker_params(req: Sampling, template: Conversation | None, context_length: int | None) -> dict[str, Any]:
    """FastChat's generation parameters for one request (what POST /worker_generate_stream receives)."""
    stop = list(req.stop)
    stop_token_ids = None
    if isinstance(req, ChatRequest):
        assert template is not None
        prompt = chat_prompt(template, req.messages)
        extra = template.stop_str
        for s in [extra] if isinstance(extra, str) else (extra or []):
            if s and s not in stop:
                stop.append(s)
        stop_token_ids = template.stop_token_ids
    else:
        assert isinstance(req, CompletionRequest)
        prompt = req.prompt
    params: dict[str, Any] = {
        "model": req.model,
        "prompt": prompt,
        "max_new_tokens": max_new_tokens(req, prompt, context_length),
        "stop": stop,
        "stop_token_ids": stop_token_ids,
        "echo": False,
    }
    if isinstance(req, ChatRequest):
        params["messages"] = [{"role": role, "content": text} for role, text in req.messages]
    for key in (
        "temperature",
        "top_p",
        "top_k",
        "repetition_penalty",
        "presence_penalty",
        "frequency_penalty",
        "seed",
    ):
        value = getattr(req, key)
        if value is not None:
            params[key] = value
    if req.logprobs:
        params["logprobs"] = max(req.top_logprobs, 1)
        if req.top_logprobs:  # for a config that maps it (OpenAI-style endpoints)
            params["top_logprobs"] = req.top_logprobs
    return {k: v for k, v in params.items() if v is not None}


# --- frames ------------------------------------------------------------------------------------------
class FrameSplitter:
    """FastChat's worker stream: JSON objects each followed by a NUL byte, cut anywhere by the network."""

    def __init__(self) -> None:
        self._rest = b""

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        data = self._rest + data if self._rest else data
        *complete, self._rest = data.split(b"\0")
        return [doc for doc in map(_load_frame, complete) if doc is not None]

    def close(self) -> list[dict[str, Any]]:
        rest, self._rest = self._rest, b""
        doc = _load_frame(rest)
        return [doc] if doc is not None else []


def _load_frame(raw: bytes) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        # The splitter does not know the model: worker_error names it (a 502, as for any bad answer).
        return dict(error_chunk("", "the worker sent a frame that is not JSON"))
    return doc if isinstance(doc, dict) else None


# --- responses ---------------------------------------------------------------------------------------
@dataclass
class Choice:
    """One choice's progress through cumulative frames."""

    index: int
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] = field(default_factory=dict)
    tokens_seen: int = 0

    def advance(self, frame: Mapping[str, Any]) -> str:
        """The new text in `frame` (FastChat frames carry the whole text so far)."""
        text = str(frame.get("text") or "").replace("\ufffd", "")  # half a multi-byte character: later
        delta = text[len(self.text) :] if text.startswith(self.text) else ""
        if len(text) >= len(self.text):
            self.text = text
        if isinstance(frame.get("usage"), Mapping):
            self.usage = {k: v for k, v in frame["usage"].items() if isinstance(v, int)}
        if frame.get("finish_reason"):
            self.finish_reason = str(frame["finish_reason"])
        return delta

    def new_logprobs(self, frame: Mapping[str, Any]) -> list[tuple[str, float, list[tuple[str, float]]]]:
        """Tokens with logprobs that arrived since the last frame (FastChat's cumulative logprobs)."""
        lp = frame.get("logprobs")
        if not isinstance(lp, Mapping):
            return []
        tokens, values = lp.get("tokens") or [], lp.get("token_logprobs") or []
        tops = lp.get("top_logprobs") or []
        out = []
        for i in range(self.tokens_seen, min(len(tokens), len(values))):
            top = tops[i] if i < len(tops) and isinstance(tops[i], Mapping) else {}
            value = values[i] if _is_number(values[i]) else 0.0
            out.append(
                (str(tokens[i]), float(value), [(str(t), float(v)) for t, v in top.items() if _is_number(v)])
            )
        self.tokens_seen += len(out)
        return out


def sum_usage(choices: list[Choice]) -> dict[str, int]:
    prompt = max((c.usage.get("prompt_tokens", 0) for c in choices), default=0)
    completion = sum(c.usage.get("completion_tokens", 0) for c in choices)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _token_entry(token: str, value: float) -> dict[str, Any]:
    return {"token": token, "logprob": value, "bytes": list(token.encode())}


def chat_logprobs(items: list[tuple[str, float, list[tuple[str, float]]]], top: int) -> dict[str, Any]:
    return {
        "content": [
            {**_token_entry(t, v), "top_logprobs": [_token_entry(a, b) for a, b in alts[:top]]}
            for t, v, alts in items
        ]
    }


def completion_logprobs(
    items: list[tuple[str, float, list[tuple[str, float]]]], top: int, offset: int
) -> dict[str, Any]:
    offsets, at = [], offset
    for t, _, _ in items:
        offsets.append(at)
        at += len(t)
    return {
        "tokens": [t for t, _, _ in items],
        "token_logprobs": [v for _, v, _ in items],
        "top_logprobs": [dict(alts[:top]) for _, _, alts in items],
        "text_offset": offsets,
    }


@dataclass(frozen=True)
class Reply:
    """Fixed fields of one response's chunks."""

    id: str
    created: int
    model: str
    chat: bool

    def chunk(
        self, index: int, text: str | None, finish: str | None, logprobs: Any = None, role: bool = False
    ) -> bytes:
        """One streamed chunk as a server-sent event."""
        if self.chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text:
                delta["content"] = text
            choice: dict[str, Any] = {
                "index": index,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish,
            }
            doc = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [choice],
            }
        else:
            doc = {
                "id": self.id,
                "object": "text_completion",
                "created": self.created,
                "model": self.model,
                "choices": [
                    {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
                ],
            }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def usage_chunk(self, usage: dict[str, int]) -> bytes:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        doc = {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": usage,
        }
        return b"data: " + orjson.dumps(doc) + b"\n\n"

    def full(self, choices: list[Choice], logprobs: list[Any]) -> dict[str, Any]:
        """The non-streamed response."""
        if self.chat:
            items: list[dict[str, Any]] = [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text},
                    "logprobs": lp,
                    "finish_reason": c.finish_reason or "stop",
                }
                for c, lp in zip(choices, logprobs, strict=True)
            ]
            kind = "chat.completion"
        else:
            items = [
                {"index": c.index, "text": c.text, "logprobs": lp, "finish_reason": c.finish_reason or "stop"}
                for c, lp in zip(choices, logprobs, strict=True)
            ]
            kind = "text_completion"
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "choices": items,
            "usage": sum_usage(choices),
        }


DONE = b"data: [DONE]\n\n"


def model_list(names: list[str], created: int) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"id": n, "object": "model", "created": created, "owned_by": "sagemaker-fastchat"} for n in names
        ],
    }
