"""The worker's frame decoder is botocore's EventStreamBuffer with header parses memoized: same messages,
same integrity errors, however the bytes are cut."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.eventstream import ChecksumMismatch, EventStreamBuffer
from hypothesis import given
from hypothesis import strategies as st

from runtime.transport import FrameBuffer
from sagemaker_fastchat.standin.eventstream import corrupt, encode_message, payload_part, stream_error

FRAMES = [
    payload_part(b'data:{"token": {"text": "a"}}\n\n'),
    payload_part(b""),
    stream_error("ModelStreamError", "boom", "418"),
    encode_message({":event-type": "Unknown", ":message-type": "event"}, b"x" * 300),
    payload_part("grüße 😀".encode()),
] * 3


def decoded(buffer: Any, cuts: list[int], data: bytes) -> list[tuple[dict[str, Any], bytes]]:
    out, start = [], 0
    for end in [*sorted(c % (len(data) + 1) for c in cuts), len(data)]:
        buffer.add_data(data[start:end])
        start = max(start, end)
        out += [(message.headers, message.payload) for message in buffer]
    return out


@given(st.lists(st.integers(0, 10_000), max_size=30))
def test_same_messages_as_botocore_however_the_bytes_arrive(cuts: list[int]) -> None:
    data = b"".join(FRAMES)
    ours = decoded(FrameBuffer(), cuts, data)
    assert ours == decoded(EventStreamBuffer(), [], data)
    assert len(ours) == len(FRAMES)


def test_headers_are_not_shared_between_messages() -> None:
    buffer = FrameBuffer()
    buffer.add_data(FRAMES[0] + FRAMES[0])
    first, second = list(buffer)
    first.headers["changed"] = True
    assert "changed" not in second.headers


def test_a_corrupt_frame_raises_botocores_checksum_error() -> None:
    buffer = FrameBuffer()
    buffer.add_data(FRAMES[0] + corrupt(FRAMES[0]))
    assert next(buffer).payload == b'data:{"token": {"text": "a"}}\n\n'
    with pytest.raises(ChecksumMismatch):
        next(buffer)
