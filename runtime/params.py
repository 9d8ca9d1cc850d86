"""Generation parameters a worker request may carry, checked before anything else happens (pure).

FastChat's API server and web UI send well-formed parameters, but the worker's routes are plain HTTP:
anything may arrive. A value of the wrong type used to raise inside the stream (after the concurrency
slot was taken), so every parameter the worker reads is checked here first, and a bad one becomes a
FastChat error frame naming it. Absent and `null` values mean "not set". Keys the worker does not read
(`logprobs`, `best_of`, ...) pass, bounded only by the request's size.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fastchat.constants import ErrorCode

MAX_MODEL_NAME_CHARS = 256
MAX_PROMPT_CHARS = 2_000_000  # ~500k tokens: beyond any context window we serve
MAX_STOP_STRINGS = 32  # FastChat merges the request's stops with the template's
MAX_STOP_CHARS = 1_000
MAX_STOP_TOKEN_IDS = 1_024
MAX_NEW_TOKENS = 1_048_576  # FastChat's API server sends 1024 * 1024 for "no limit"
MAX_TOP_K = 100_000
SEED_BOUND = 2**63
MAX_TOP_LOGPROBS = 20  # OpenAI's limit

# name -> (lowest, highest) for the numeric sampling parameters
_NUMBERS: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "repetition_penalty": (0.0, 10.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}
# name -> (lowest, highest) for the integer parameters
_INTEGERS: dict[str, tuple[int, int]] = {
    "max_new_tokens": (1, MAX_NEW_TOKENS),
    "top_k": (-1, MAX_TOP_K),  # -1 (FastChat) or 0 means "off"
    "seed": (-SEED_BOUND, SEED_BOUND - 1),
    "top_logprobs": (0, MAX_TOP_LOGPROBS),  # written where a config maps it (OpenAI-style endpoints)
}
_BOOLEANS = ("echo", "do_sample")


@dataclass(frozen=True)
class Invalid:
    """Why a request is refused: the parameter, the reason, and FastChat's error code for it."""

    param: str
    why: str
    code: ErrorCode

    @property
    def message(self) -> str:
        return f"{self.param}: {self.why}"


def _type_error(param: str, expected: str, value: Any) -> Invalid:
    return Invalid(param, f"must be {expected}, not {type(value).__name__}", ErrorCode.VALIDATION_TYPE_ERROR)


def _range_error(param: str, why: str) -> Invalid:
    return Invalid(param, why, ErrorCode.PARAM_OUT_OF_RANGE)


def _check_number(param: str, value: Any, low: float, high: float) -> Invalid | None:
    if isinstance(value, bool) or not isinstance(
        value, (int, float)
    ):  # a tuple: `int | float` is built per call
        return _type_error(param, "a number", value)
    if not math.isfinite(value) or not low <= value <= high:
        return _range_error(param, f"must be between {low:g} and {high:g}, got {value!r}")
    return None


def _check_integer(param: str, value: Any, low: int, high: int) -> Invalid | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return _type_error(param, "an integer", value)
    if not low <= value <= high:
        shown = value if abs(value) < 10**30 else "a huge integer"
        return _range_error(param, f"must be between {low} and {high}, got {shown}")
    return None


def _check_stop(value: Any) -> Invalid | None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list):
        return _type_error("stop", "a string or a list of strings", value)
    if len(items) > MAX_STOP_STRINGS:
        return _range_error("stop", f"at most {MAX_STOP_STRINGS} strings, got {len(items)}")
    for item in items:
        if not isinstance(item, str):
            return _type_error("stop", "a string or a list of strings (an item is not)", item)
        if len(item) > MAX_STOP_CHARS:
            return _range_error("stop", f"each string at most {MAX_STOP_CHARS} characters, got {len(item)}")
    return None


def _check_stop_token_ids(value: Any) -> Invalid | None:
    if not isinstance(value, list):
        return _type_error("stop_token_ids", "a list of integers", value)
    if len(value) > MAX_STOP_TOKEN_IDS:
        return _range_error("stop_token_ids", f"at most {MAX_STOP_TOKEN_IDS} ids, got {len(value)}")
    if any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        return _type_error("stop_token_ids", "a list of integers (an item is not)", value)
    return None


def check_params(params: Mapping[str, Any]) -> Invalid | None:
    """The first problem with a request's generation parameters, or None when they can be served (the
    worker checks `model` itself: it picks the adapter)."""
    prompt = params.get("prompt")
    if not isinstance(prompt, str):
        return _type_error("prompt", "a string", prompt)
    if len(prompt) > MAX_PROMPT_CHARS:
        return _range_error("prompt", f"at most {MAX_PROMPT_CHARS} characters, got {len(prompt)}")
    for name, (low, high) in _NUMBERS.items():
        if (number := params.get(name)) is not None and (bad := _check_number(name, number, low, high)):
            return bad
    for name, (ilow, ihigh) in _INTEGERS.items():
        if (integer := params.get(name)) is not None and (bad := _check_integer(name, integer, ilow, ihigh)):
            return bad
    for name in _BOOLEANS:
        if (flag := params.get(name)) is not None and not isinstance(flag, bool):
            return _type_error(name, "true or false", flag)
    if (stop := params.get("stop")) is not None and (bad := _check_stop(stop)):
        return bad
    if (ids := params.get("stop_token_ids")) is not None and (bad := _check_stop_token_ids(ids)):
        return bad
    if params.get("images"):
        return _range_error("images", "this worker serves text-only models")
    return None
