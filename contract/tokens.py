"""Token counting without a tokenizer (pure).

Workers hold no model weights or tokenizers, so counts are approximations: about four bytes of UTF-8 per
token, which is close for English BPE vocabularies and errs high for code and non-Latin scripts. FastChat
uses the count to check context length and report usage; containers that report exact counts win.
"""

from __future__ import annotations

BYTES_PER_TOKEN = 4


def approx_token_count(text: str) -> int:
    return (len(text.encode()) + BYTES_PER_TOKEN - 1) // BYTES_PER_TOKEN
