"""Chats through the OpenAI API with the real `openai` client, and what the demo endpoints' replies say.

A demo reply is `Demo model <endpoint> (not a real LLM):` and then N-1 words derived from the prompt
(sagemaker_fastchat/standin/demo.py): the endpoint that answered and whether the reply is whole can be
read from the text itself.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import openai

REPLY = re.compile(r"^\s*Demo model (\S+) \(not a real LLM\):((?: \S+)*)\s*$", re.S)


@dataclass
class StreamResult:
    model: str
    started: float  # monotonic
    first_token: float | None
    ended: float
    text: str
    finish_reason: str | None
    error: str | None

    @property
    def endpoint(self) -> str | None:
        m = REPLY.match(self.text)
        return m.group(1) if m else None

    @property
    def words(self) -> int:
        m = REPLY.match(self.text)
        return len(m.group(2).split()) if m else 0


def describe_error(exc: BaseException) -> str:
    """What a client saw, in one line: the exception's class and message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:200]}"


async def stream_chat(
    client: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int = 200
) -> StreamResult:
    started = time.monotonic()
    first: float | None = None
    text, finish = "", None
    try:
        stream = await client.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            temperature=0,
            max_tokens=max_tokens,
        )
        async for chunk in stream:
            for choice in chunk.choices:
                if choice.delta.content:
                    if first is None:
                        first = time.monotonic()
                    text += choice.delta.content
                if choice.finish_reason:
                    finish = choice.finish_reason
    except Exception as exc:  # whatever the client raises is the observation
        return StreamResult(model, started, first, time.monotonic(), text, finish, describe_error(exc))
    return StreamResult(model, started, first, time.monotonic(), text, finish, None)


def client_for(api_url: str, timeout: float = 60.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=api_url, api_key="none", max_retries=0, timeout=timeout)


def sync_chat(api_url: str, model: str, prompt: str, timeout: float = 30.0) -> str:
    """A non-streaming chat at temperature 0: the reference replies compared byte for byte."""
    client = openai.OpenAI(base_url=api_url, api_key="none", max_retries=0, timeout=timeout)
    reply = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=64
    )
    return reply.choices[0].message.content or ""
