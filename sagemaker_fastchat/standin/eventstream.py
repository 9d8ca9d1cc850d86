"""AWS event-stream framing (the binary protocol of InvokeEndpointWithResponseStream), encoder side.

A message: prelude (total length u32, headers length u32, CRC32 of those 8 bytes), headers, payload,
and a CRC32 of everything before it. botocore ships only the decoder; this is its mirror image.
"""

from __future__ import annotations

import json
import struct
from binascii import crc32

_STRING = 7


def _headers(headers: dict[str, str]) -> bytes:
    out = bytearray()
    for name, value in headers.items():
        raw_name, raw_value = name.encode(), value.encode()
        out += struct.pack("!B", len(raw_name)) + raw_name
        out += struct.pack("!BH", _STRING, len(raw_value)) + raw_value
    return bytes(out)


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One framed message with valid prelude and message CRCs."""
    raw_headers = _headers(headers)
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", crc32(prelude))
    body = prelude + raw_headers + payload
    return body + struct.pack("!I", crc32(body))


def payload_part(data: bytes) -> bytes:
    """A PayloadPart event carrying raw bytes of the model's response."""
    return encode_message(
        {":event-type": "PayloadPart", ":content-type": "application/octet-stream", ":message-type": "event"},
        data,
    )


def stream_error(kind: str, message: str, error_code: str | None = None) -> bytes:
    """A modeled exception event: `ModelStreamError` or `InternalStreamFailure`."""
    body: dict[str, str] = {"Message": message}
    if error_code:
        body["ErrorCode"] = error_code
    return encode_message(
        {":exception-type": kind, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps(body).encode(),
    )


def corrupt(frame: bytes) -> bytes:
    """The same frame with its message CRC broken (for tests of the client's integrity check)."""
    return frame[:-4] + bytes(b ^ 0xFF for b in frame[-4:])
