"""A request's pure half: any batching of the streamed bytes gives the same FastChat output; parameters are
checked first (runtime/params.py) and every failure is an error chunk naming model, endpoint and why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from fastchat.constants import ErrorCode
from hypothesis import given
from hypothesis import strategies as st

from contract.chunk import error_chunk
from contract.spec import parse_model_item
from runtime import adapter as adapter_module
from runtime.adapter import Generation
from runtime.params import MAX_PROMPT_CHARS, check_params
from sagemaker_fastchat.standin import demo
from tests.helpers import example_item

SPEC = parse_model_item(example_item("tgi"))


def lines(prompt: str) -> list[bytes]:
    return demo.render_lines("tgi", "demo-tgi", demo.plan("tgi", "demo-tgi", {"inputs": prompt}))


def run(batches: list[bytes], **params: Any) -> tuple[list[str], dict[str, Any], bool]:
    generation = Generation(SPEC, None, {"prompt": "p", **params})
    shown = []
    for data in batches:
        chunk = generation.feed(data)
        if chunk is not None:
            shown.append(chunk["text"])
        if generation.done:
            break
    return shown, generation.finish(), generation.done


@given(st.lists(st.integers(1, 40), min_size=1, max_size=40))
def test_any_batching_gives_the_same_final_chunk(sizes: list[int]) -> None:
    parts = lines("[[say:one two three four five six seven eight nine ten]]")
    one_by_one = run(parts)[1]
    batches, i = [], 0
    for size in sizes * 10:
        batches.append(b"".join(parts[i : i + size]))
        i += size
    batches.append(b"".join(parts[i:]))
    shown, final, _ = run([b for b in batches if b])
    assert final == one_by_one
    assert final["text"] == "one two three four five six seven eight nine ten"
    assert all(final["text"].startswith(text) for text in shown)


def test_a_stop_string_inside_a_batch_cuts_the_text_and_ends_the_generation() -> None:
    shown, final, done = run([b"".join(lines("[[say:alpha beta USER: gamma delta]]"))], stop=["USER:"])
    assert done
    assert final["text"] == "alpha beta "
    assert final["finish_reason"] == "stop"
    assert shown == ["alpha beta "]


def test_an_error_line_inside_a_batch_shows_the_text_before_it_then_the_error() -> None:
    error = b'data:{"error": "CUDA out of memory", "error_type": "generation"}\n\n'
    shown, final, done = run([b"".join(lines("[[say:alpha beta]]")[:2]) + error])
    assert done
    assert shown == ["alpha beta"]
    assert final["error_code"] != 0
    assert "CUDA out of memory" in final["text"]
    assert "demo-tgi" in final["text"]


class NoCalls:
    """A SageMaker client that must not be used."""

    async def get(self) -> Any:
        raise AssertionError("the endpoint was called")


async def collect(batches: AsyncIterator[bytes]) -> list[bytes]:
    return [data async for data in batches]


def test_a_request_the_spec_refuses_fails_before_any_call() -> None:
    generation = Generation(SPEC, NoCalls(), {"prompt": None})  # type: ignore[arg-type]
    assert generation.done
    assert asyncio.run(collect(generation.batches())) == []
    assert generation.finish()["error_code"] != 0


GOOD = {
    "model": "m",
    "prompt": "USER: hi ASSISTANT:",
    "temperature": 0.7,
    "top_p": 1.0,
    "top_k": -1,
    "max_new_tokens": 512,
    "repetition_penalty": 1.0,
    "presence_penalty": 0.0,
    "frequency_penalty": 0.0,
    "stop": ["USER:", "</s>"],
    "stop_token_ids": [2],
    "echo": False,
    "seed": 7,
    "logprobs": None,
}


def test_what_fastchat_sends_passes() -> None:
    """The parameters FastChat's API server and web UI send are accepted; null means "not set"."""
    assert check_params(GOOD) is None
    assert check_params({"model": "m", "prompt": "", "temperature": None, "stop": "USER:"}) is None


@pytest.mark.parametrize(
    ("change", "param", "code"),
    [
        ({"temperature": "0.7"}, "temperature", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"temperature": 3}, "temperature", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"temperature": float("nan")}, "temperature", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"top_p": "1"}, "top_p", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"top_p": -0.1}, "top_p", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"top_k": "5"}, "top_k", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"top_k": 2.5}, "top_k", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"top_k": True}, "top_k", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"max_new_tokens": 0}, "max_new_tokens", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"max_new_tokens": 10**40}, "max_new_tokens", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"repetition_penalty": [1]}, "repetition_penalty", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"stop": 5}, "stop", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"stop": {"a": 1}}, "stop", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"stop": ["ok", 3]}, "stop", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"stop": ["s"] * 33}, "stop", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"stop": "x" * 1001}, "stop", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"stop_token_ids": 2}, "stop_token_ids", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"seed": "7"}, "seed", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"seed": 2**64}, "seed", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"top_logprobs": 21}, "top_logprobs", ErrorCode.PARAM_OUT_OF_RANGE),  # written where mapped
        ({"top_logprobs": "2"}, "top_logprobs", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"echo": "yes"}, "echo", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"do_sample": 1}, "do_sample", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"prompt": None}, "prompt", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"prompt": ["a"]}, "prompt", ErrorCode.VALIDATION_TYPE_ERROR),
        ({"prompt": "x" * (MAX_PROMPT_CHARS + 1)}, "prompt", ErrorCode.PARAM_OUT_OF_RANGE),
        ({"images": ["data:image/png;base64,AAAA"]}, "images", ErrorCode.PARAM_OUT_OF_RANGE),
    ],
)
def test_a_bad_parameter_is_named_with_fastchats_code(change: dict[str, Any], param: str, code: int) -> None:
    invalid = check_params({**GOOD, **change})
    assert invalid is not None
    assert (invalid.param, invalid.code) == (param, code)
    assert invalid.message.startswith(f"{param}: ")
    assert len(invalid.message) < 200  # a huge value is never echoed back


JSON = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3) | st.sampled_from([2**64, -(2**70)]),
    st.floats(),
    st.text(max_size=3),
    st.lists(st.text(max_size=2) | st.integers(-2, 2), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)
KEYS = st.sampled_from([*GOOD, "images", "do_sample", "other"])


@given(st.dictionaries(KEYS, JSON, max_size=8))
def test_the_check_is_total(params: dict[str, Any]) -> None:
    """Any JSON object gets an answer, never an exception; what passes builds a request, what does not
    is a failed Generation (never an exception)."""
    invalid = check_params(params)
    assert invalid is None or invalid.message
    generation = Generation(SPEC, None, params)
    assert (generation.failure is not None) == (invalid is not None)


def test_a_bad_parameter_fails_the_generation_with_a_machine_readable_error() -> None:
    """A string temperature (it used to raise inside the stream) is an error chunk naming it."""
    _, final, done = run([], temperature="hot")
    assert done
    assert final["error_code"] == ErrorCode.VALIDATION_TYPE_ERROR
    assert final["text"].startswith("model demo-tgi: temperature: must be a number")
    assert final["error"] == {
        "kind": "invalid_request",
        "model": "demo-tgi",
        "endpoint": "demo-tgi",
        "param": "temperature",
    }


def test_a_spec_that_cannot_build_a_request_fails_that_request_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """A config that breaks at first use is an internal error chunk, not an exception."""

    def broken(*_: Any) -> dict[str, Any]:
        raise TypeError("'str' object does not support item assignment")

    monkeypatch.setattr(adapter_module, "build_request", broken)
    _, final, done = run([])
    assert done
    assert final["error"]["kind"] == "internal"
    assert "cannot build a request" in final["text"]


def test_error_text_names_model_and_endpoint_never_high_traffic() -> None:
    """Users read which model and endpoint failed and why, not FastChat's generic 'high traffic' line."""
    chunk = error_chunk(
        "m", "endpoint e is throttling requests; try again shortly", 42901, "throttled", endpoint="e"
    )
    assert chunk["text"] == "model m: endpoint e is throttling requests; try again shortly"
    assert "TRAFFIC" not in chunk["text"].upper()
    assert chunk["error"] == {"kind": "throttled", "model": "m", "endpoint": "e"}


def test_every_fastchat_template_passes_the_check() -> None:
    """The web UI and the API send each template's stop_str and stop_token_ids: none may be refused."""
    from fastchat.conversation import conv_templates

    for name, conv in conv_templates.items():
        params = {**GOOD, "stop": conv.stop_str, "stop_token_ids": conv.stop_token_ids}
        assert check_params(params) is None, name
