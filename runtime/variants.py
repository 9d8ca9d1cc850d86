"""Worker-side variant routing facts: the sticky key, the per-endpoint breakers, one attempt's outcome.

The sticky key (README "Variants on the worker"): the request's `conversation_id` parameter when
the caller passes one (the OpenAI API forwards an `X-Conversation-Id` header there, the web UI each
conversation's id: runtime/fastchat_compat.py shim 12), else a hash of the
conversation's first user turn: the prompt up to the first assistant turn of the model's conversation
template, which every later turn and every regeneration of that conversation repeats unchanged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from contract.spec import ModelSpec
from rollout.breaker import Breaker, BreakerPolicy

MAX_CONVERSATION_ID = 256  # characters of an explicit id used (a longer one is cut, never refused)


def sticky_key(params: Mapping[str, Any], assistant_role: str | None) -> str:
    """The conversation's key for variant choice (total: any parameters give a key)."""
    explicit = params.get("conversation_id")
    if isinstance(explicit, str) and explicit:
        return "id:" + explicit[:MAX_CONVERSATION_ID]
    prompt = params.get("prompt")
    text = prompt if isinstance(prompt, str) else ""
    if assistant_role:
        cut = text.find(assistant_role)
        if cut > 0:
            text = text[:cut]
    return "turn:" + hashlib.blake2b(text.encode(errors="replace"), digest_size=12).hexdigest()


class Breakers:
    """One circuit breaker per endpoint name, shared by every model and spec version using it (a new
    rollout step builds new adapters; an endpoint's health carries over)."""

    def __init__(
        self, policy: BreakerPolicy | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._breakers: dict[str, Breaker] = {}
        self._lock = threading.Lock()  # adapters are built in the poller's thread

    def get(self, endpoint: str) -> Breaker:
        breaker = self._breakers.get(endpoint)
        if breaker is None:
            with self._lock:
                breaker = self._breakers.setdefault(endpoint, Breaker(self.policy, self._clock))
        return breaker


def assistant_role(spec: ModelSpec) -> str | None:
    """The assistant role marker of the model's conversation template, for the sticky key (None for a
    model with one variant: it makes no choice). Looked up once per spec, in the poller's thread."""
    if len(spec.variants()) <= 1:
        return None
    try:
        from fastchat.conversation import get_conv_template

        from runtime import fastchat_compat

        conv = (
            get_conv_template(spec.conv_template)
            if spec.conv_template
            else fastchat_compat.conversation_template(spec.name)
        )
        return str(conv.roles[1]) or None
    except Exception:  # no template: the whole prompt is the key (stable across regenerations only)
        return None


@dataclass
class Attempt:
    """One try of one variant within a request (a request that failed over has several)."""

    model: str
    endpoint: str
    started: float  # time.monotonic()
    ttft_ms: float | None = None  # to this variant's first chunk
    error_kind: str | None = None  # set when it failed
    endpoint_failure: bool = False  # the failure was the endpoint's (counts against it)
    failed_over: bool = False  # a failure before any token, retried on the next variant

    @property
    def known(self) -> bool:
        """Whether the outcome is known (a client gone before the first token leaves it unknown)."""
        return self.ttft_ms is not None or self.error_kind is not None

    @property
    def counted(self) -> bool:
        """Whether it tells something about the endpoint (rollout counts): not a client gone before the
        first token, nor a request refused before the call (invalid) or failed by the worker itself."""
        return self.known and (self.ttft_ms is not None or self.endpoint_failure)


Recorder = Callable[[Attempt], None]  # told of every attempt once it ends (runtime/outcomes.py)
