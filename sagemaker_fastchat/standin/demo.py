"""Demo endpoints: a small deterministic generator that streams in real container formats (pure).

Formats: `tgi` (text-generation-inference `generate_stream`: `data:{"token": ...}` SSE lines),
`openai` (OpenAI-style chat completion chunks as SSE, ending with `data: [DONE]`), and `lmi`
(DJL LMI / vLLM JSON lines). The reply is derived from the prompt, so tests can predict it.

Test hooks, written anywhere in the prompt (documented in the README; they only exist on demo endpoints):
`[[tokens:N]]` reply length, `[[rate:R]]` tokens per second, `[[ttft:S]]` seconds before the first token,
`[[fail-after:N]]` ModelStreamError after N tokens, `[[internal-failure-after:N]]` InternalStreamFailure,
`[[corrupt-after:N]]` a frame with a bad CRC, `[[error-line]]` the container streams an error object,
`[[throttle]]` a ThrottlingException,
(an endpoint named `demo-<format>-broken[-...]` fails every request before its first token),
`[[html]]` a reply holding HTML and markdown (for XSS checks), `[[say:TEXT]]` reply with TEXT exactly,
`[[roles]]` (openai format) a reply listing the messages received as `role:words` items, one per message.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

FORMATS = ("tgi", "openai", "lmi")
DEFAULT_REPLY_TOKENS = 40
_WORDS = (
    "streaming",
    "tokens",
    "arrive",
    "one",
    "by",
    "one",
    "from",
    "a",
    "SageMaker",
    "endpoint",
    "stand-in",
    "that",
    "speaks",
    "the",
    "real",
    "event",
    "stream",
    "protocol",
    "so",
    "every",
    "byte",
    "takes",
    "the",
    "same",
    "path",
    "as",
    "in",
    "production",
    "while",
    "this",
    "demo",
    "model",
    "answers",
    "with",
    "friendly",
    "deterministic",
    "text",
    "chosen",
    "from",
    "your",
    "prompt",
)
_HOOK = re.compile(r"\[\[([a-z-]+)(?::([^\]]*))?\]\]")
HTML_REPLY = (
    "Here is **bold markdown** and an image tag: <img src=x onerror=alert(1)> <script>alert(2)</script> done."
)


@dataclass(frozen=True)
class Plan:
    """What one demo request will stream."""

    tokens: tuple[str, ...]
    finish_reason: str  # "length", "eos_token" or "stop_sequence"
    rate: float | None = None
    ttft: float = 0.0
    fail_after: int | None = None
    fail_kind: str = "ModelStreamError"
    corrupt_after: int | None = None
    error_line: bool = False


def _hooks(prompt: str) -> dict[str, str]:
    return {m.group(1): (m.group(2) or "") for m in _HOOK.finditer(prompt)}


def request_fields(fmt: str, body: dict[str, Any]) -> tuple[str, int | None, list[str]]:
    """Prompt, max new tokens and stop strings of a request body in format `fmt`."""
    if fmt == "openai":
        messages = body.get("messages") or [{"content": body.get("prompt", "")}]
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        limit = body.get("max_tokens") or body.get("max_completion_tokens")
        stop = body.get("stop")
    else:
        params = body.get("parameters") or {}
        prompt = str(body.get("inputs", ""))
        limit = params.get("max_new_tokens")
        stop = params.get("stop") if fmt == "tgi" else params.get("stop_sequences", params.get("stop"))
    stops = [stop] if isinstance(stop, str) else list(stop or [])
    return prompt, (int(limit) if limit is not None else None), stops


def _turns(body: dict[str, Any]) -> list[tuple[str, int]]:
    """(role, word count) of each message an OpenAI-style body carries."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return []
    return [
        (str(m.get("role")), len(str(m.get("content", "")).split())) for m in messages if isinstance(m, dict)
    ]


def reply_words(prompt: str, n: int, seed_text: str) -> list[str]:
    digest = hashlib.sha256((seed_text + prompt).encode()).digest()
    words = [_WORDS[(digest[i % len(digest)] + i) % len(_WORDS)] for i in range(n)]
    return [" " + w for w in words]


def plan(fmt: str, endpoint: str, body: dict[str, Any]) -> Plan:
    prompt, limit, stops = request_fields(fmt, body)
    hooks = _hooks(prompt)
    if "say" in hooks:
        text = hooks["say"]
        tokens = [t for t in re.split(r"(?<=\S)(?=\s)", text) if t]
    elif "roles" in hooks and fmt == "openai":
        tokens = [f"{' ' if i else ''}{role}:{words}" for i, (role, words) in enumerate(_turns(body))]
    elif "html" in hooks:
        tokens = re.split(r"(?<=\S)(?=\s)", HTML_REPLY)
    else:
        n = int(hooks.get("tokens", DEFAULT_REPLY_TOKENS))
        tokens = [f"Demo model {endpoint} (not a real LLM):", *reply_words(prompt, n - 1, endpoint)]
    finish = "eos_token"
    for s in stops:
        joined = "".join(tokens)
        at = joined.find(s) if s else -1
        if at != -1:  # like TGI: generation stops right after the token that completes the stop string
            out, size = [], 0
            for t in tokens:
                out.append(t)
                size += len(t)
                if size >= at + len(s):
                    break
            tokens, finish = out, "stop_sequence"
    if limit is not None and len(tokens) > limit:
        tokens, finish = tokens[: max(limit, 0)], "length"
    fail_kind, fail_after = "ModelStreamError", None
    if "fail-after" in hooks:
        fail_after = int(hooks["fail-after"])
    if "internal-failure-after" in hooks:
        fail_kind, fail_after = "InternalStreamFailure", int(hooks["internal-failure-after"])
    if "broken" in endpoint.split("-")[2:]:  # `demo-<format>-broken...`: fails before any token
        fail_after = 0
    return Plan(
        tokens=tuple(tokens),
        finish_reason=finish,
        rate=float(hooks["rate"]) if "rate" in hooks else None,
        ttft=float(hooks.get("ttft", 0) or 0),
        fail_after=fail_after,
        fail_kind=fail_kind,
        corrupt_after=int(hooks["corrupt-after"]) if "corrupt-after" in hooks else None,
        error_line="error-line" in hooks,
    )


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def render_lines(fmt: str, endpoint: str, p: Plan) -> list[bytes]:
    """The streamed lines (each with its line ending) for a plan, in the container's own format."""
    n = len(p.tokens)
    full = "".join(p.tokens)
    lines: list[str] = []
    if fmt == "tgi":
        for i, tok in enumerate(p.tokens):
            last = i == n - 1
            details = (
                {"finish_reason": p.finish_reason, "generated_tokens": n, "seed": None} if last else None
            )
            token = {"id": i + 1, "text": tok, "logprob": -0.25, "special": False}
            lines.append(
                "data:"
                + _dump(
                    {
                        "index": i + 1,
                        "token": token,
                        "generated_text": full if last else None,
                        "details": details,
                    }
                )
                + "\n\n"
            )
        if p.error_line:
            lines.append(
                "data:"
                + _dump({"error": "Input validation error: demo error", "error_type": "validation"})
                + "\n\n"
            )
    elif fmt == "openai":
        base = {"id": "chatcmpl-demo", "object": "chat.completion.chunk", "created": 0, "model": endpoint}
        lines.append(
            "data: "
            + _dump(
                {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
            )
            + "\n\n"
        )
        for tok in p.tokens:
            lines.append(
                "data: "
                + _dump({**base, "choices": [{"index": 0, "delta": {"content": tok}, "finish_reason": None}]})
                + "\n\n"
            )
        if p.error_line:
            lines.append(
                "data: "
                + _dump({"error": {"message": "demo error", "type": "invalid_request_error"}})
                + "\n\n"
            )
        reason = "length" if p.finish_reason == "length" else "stop"
        lines.append(
            "data: "
            + _dump({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
            + "\n\n"
        )
        lines.append(
            "data: "
            + _dump(
                {
                    **base,
                    "choices": [],
                    "usage": {"prompt_tokens": 0, "completion_tokens": n, "total_tokens": n},
                }
            )
            + "\n\n"
        )
        lines.append("data: [DONE]\n\n")
    else:
        for i, tok in enumerate(p.tokens):
            last = i == n - 1
            details = {"finish_reason": p.finish_reason, "generated_tokens": n} if last else None
            lines.append(
                _dump(
                    {
                        "token": {"id": i + 1, "text": tok, "log_prob": -0.25},
                        "generated_text": full if last else None,
                        "details": details,
                    }
                )
                + "\n"
            )
        if p.error_line:
            lines.append(_dump({"error": "demo error", "code": 400}) + "\n")
    return [line.encode() for line in lines]


def full_response(fmt: str, endpoint: str, p: Plan) -> dict[str, Any] | list[Any]:
    """The non-streaming (InvokeEndpoint) response body."""
    text = "".join(p.tokens)
    if fmt == "tgi":
        return [{"generated_text": text}]
    if fmt == "openai":
        reason = "length" if p.finish_reason == "length" else "stop"
        return {
            "id": "chatcmpl-demo",
            "object": "chat.completion",
            "model": endpoint,
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": reason}
            ],
        }
    return {"generated_text": text}
