"""Decoded events -> FastChat's worker output: cumulative text, finish reason, usage (pure).

FastChat's API server and web UI compute each delta as `text[len(previous):]`, so the visible text
may only grow. Stop strings are honoured here (containers cap how many they accept): text that could be
the start of a stop string is held back until it is known not to be one, and text from a stop string on
is never shown. Special tokens (`special: true`) are not shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from contract.chunk import WorkerChunk
from contract.decoder import StreamEvent

# Container finish reasons (TGI, LMI, OpenAI, vLLM) -> FastChat's "stop" / "length".
_FINISH_REASONS = {
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "eos_token": "stop",
    "eos": "stop",
    "stop_sequence": "stop",
    "stop": "stop",
    "end_turn": "stop",
}


def fastchat_finish_reason(reason: str | None) -> str:
    """Map a container's finish reason; an unknown or missing one ends as "stop"."""
    return _FINISH_REASONS.get((reason or "").lower(), "stop")


@dataclass
class OutputAssembler:
    """Per-request state turning events into FastChat chunks (one instance per stream)."""

    stop: list[str] = field(default_factory=list)
    prompt_tokens: int = 0
    text: str = ""  # everything received (not shown past a stop string)
    visible: str = ""  # what has been shown so far
    finish_reason: str | None = None
    completion_tokens: int = 0
    reported_tokens: int | None = None
    generated_text: str | None = None
    container_finish: str | None = None  # what the container said; applied when the stream ends
    # Per-token logprobs, collected when the request asks for them (FastChat's `logprobs` parameter)
    # and the config maps them: (token text, logprob, top alternatives).
    logprobs: list[tuple[str, float, dict[str, float]]] | None = None

    @property
    def stopped(self) -> bool:
        """A stop string was reached: no further events matter (close the stream)."""
        return self.finish_reason is not None

    def push(self, event: StreamEvent) -> WorkerChunk | None:
        """Take one event; return a chunk when the visible text grew, else None."""
        return self.push_all((event,))

    def push_all(self, events: Iterable[StreamEvent]) -> WorkerChunk | None:
        """Take a batch of events (all that arrived since the last chunk was sent); one chunk for the
        whole batch when the visible text grew, else None."""
        if self.stopped:
            return None
        texts = []
        for event in events:
            if event.generated_tokens is not None:
                self.reported_tokens = event.generated_tokens
            if event.generated_text is not None:
                self.generated_text = event.generated_text
            if event.text is not None:
                self.completion_tokens += 1
                if not event.special:
                    texts.append(event.text)
                    if self.logprobs is not None:
                        self.logprobs.extend(_token_logprobs(event.text, event.logprobs))
            if event.finish_reason is not None:
                self.container_finish = fastchat_finish_reason(event.finish_reason)
        if texts:
            self.text += "".join(texts)
        return self._advance(final=False)

    def finish(self) -> WorkerChunk:
        """The last chunk, after the stream ended: held-back text is released, finish_reason set."""
        if not self.stopped:
            if not self.text and self.generated_text:
                self.text = self.generated_text  # containers that only report the full text at the end
            self._advance(final=True)
            self.finish_reason = self.container_finish or "stop"
        return self.chunk()

    def chunk(self) -> WorkerChunk:
        completion = self.reported_tokens if self.reported_tokens is not None else self.completion_tokens
        chunk: WorkerChunk = {
            "text": self.visible,
            "error_code": 0,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": completion,
                "total_tokens": self.prompt_tokens + completion,
            },
            "finish_reason": self.finish_reason,
        }
        if self.logprobs:
            chunk["logprobs"] = self._logprobs_doc()
        return chunk

    def _logprobs_doc(self) -> dict[str, list[object]]:
        """FastChat's (cumulative) logprobs object: tokens, token_logprobs, top_logprobs."""
        items = self.logprobs or []
        return {
            "tokens": [t for t, _, _ in items],
            "token_logprobs": [v for _, v, _ in items],
            "top_logprobs": [top for _, _, top in items],
        }

    def _advance(self, final: bool) -> WorkerChunk | None:
        text = self.text
        cut = len(text)
        if self.stop:
            # Only the tail can hold a new match: search from where the last visible text could overlap.
            start = max(0, len(self.visible) - max(map(len, self.stop)))
            for s in self.stop:
                i = text.find(s, start)
                if i != -1 and i < cut:
                    cut = i
            if cut < len(text):
                self.text = text[:cut]
                self.finish_reason = "stop"
                self.visible = self.text
                return self.chunk()
            if not final:
                cut -= self._partial_stop_length(text)
        if cut > len(self.visible):
            self.visible = text[:cut]
            return self.chunk()
        return None

    def _partial_stop_length(self, text: str) -> int:
        """Length of the longest tail of `text` that is a proper prefix of a stop string."""
        longest = 0
        for s in self.stop:
            for n in range(min(len(s) - 1, len(text)), longest, -1):
                if text.endswith(s[:n]):
                    longest = n
                    break
        return longest


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _token_logprobs(text: str, value: Any) -> list[tuple[str, float, dict[str, float]]]:
    """A token's logprob as the config maps it: a number (TGI's `token.logprob`) or OpenAI's
    `logprobs` object (`{"content": [{"token", "logprob", "top_logprobs"}]}`)."""
    if _number(value):
        return [(text, float(value), {})]
    if isinstance(value, dict) and isinstance(value.get("content"), list):
        out = []
        for entry in value["content"]:
            if isinstance(entry, dict) and _number(entry.get("logprob")):
                tops = entry.get("top_logprobs")
                alts = {
                    str(a.get("token")): float(a["logprob"])
                    for a in (tops if isinstance(tops, list) else [])
                    if isinstance(a, dict) and _number(a.get("logprob"))
                }
                out.append((str(entry.get("token", "")), float(entry["logprob"]), alts))
        return out
    return []
