"""FastChat's OpenAI protocol models on pydantic v2, after our shims."""

from __future__ import annotations

import json

from fastchat.protocol import openai_api_protocol as protocol

from runtime import fastchat_compat


def test_model_list_serializes_without_warnings() -> None:
    """`/v1/models`: is_blocking is a boolean, as in OpenAI's API (pytest turns warnings into errors)."""
    fastchat_compat.patch_pydantic_json()
    card = protocol.ModelCard(id="m", root="m", permission=[protocol.ModelPermission()])
    data = json.loads(protocol.ModelList(data=[card]).model_dump_json())
    assert data["data"][0]["permission"][0]["is_blocking"] is False


def test_streamed_chunks_accept_fastchats_json_arguments() -> None:
    """The API server calls `.json(exclude_unset=True, ensure_ascii=False)`; non-ASCII stays as is."""
    fastchat_compat.patch_pydantic_json()
    delta = protocol.DeltaMessage(content="grüße 😀")
    assert json.loads(delta.json(exclude_unset=True, ensure_ascii=False)) == {"content": "grüße 😀"}
    assert "grüße" in delta.json(exclude_unset=True, ensure_ascii=False)
