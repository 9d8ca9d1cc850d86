"""The OpenAI API passes a conversation's sticky key to the worker (issue 17: a model's variants keep a
conversation on one endpoint): the X-Conversation-Id header, else OpenAI's `user` field."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest

from runtime.openai_api import Settings, create_app
from tests.helpers import serve_in_thread
from tests.unit.test_openai_directory import CONTROLLER, FakeHttp


class Recording(FakeHttp):
    def __init__(self) -> None:
        super().__init__()
        self.sent: list[Mapping[str, Any]] = []

    async def stream(self, url: str, body: Mapping[str, Any]) -> AsyncIterator[bytes]:  # type: ignore[override]
        self.sent.append(body)
        yield b'{"text": "hi", "error_code": 0, "finish_reason": "stop", "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}\0'


@pytest.mark.parametrize(
    ("headers", "extra", "expected"),
    [
        ({"X-Conversation-Id": "conv-7"}, {"user": "u-1"}, "conv-7"),
        ({}, {"user": "u-1"}, "u-1"),
        ({}, {}, None),
    ],
)
def test_the_sticky_key_reaches_the_worker(
    headers: dict[str, str], extra: dict[str, Any], expected: str | None
) -> None:
    http = Recording()
    app = create_app(Settings(controller_address=CONTROLLER), lambda: http)
    with serve_in_thread(app) as url:
        body = {"model": "alpha", "messages": [{"role": "user", "content": "hello"}], **extra}
        response = httpx.post(f"{url}/v1/chat/completions", json=body, headers=headers, timeout=10)
        assert response.status_code == 200, response.text
    assert http.sent[-1].get("conversation_id") == expected
