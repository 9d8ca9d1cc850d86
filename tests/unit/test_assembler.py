"""FastChat output: cumulative text that only grows, stop strings with hold-back, finish reasons, usage."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.assembler import OutputAssembler, fastchat_finish_reason
from contract.decoder import StreamEvent


def run(tokens: list[str], stop: list[str], finish: str | None = None) -> tuple[list[str], dict[str, object]]:
    a = OutputAssembler(stop=stop, prompt_tokens=5)
    shown = []
    for i, t in enumerate(tokens):
        last = i == len(tokens) - 1
        chunk = a.push(StreamEvent(text=t, finish_reason=finish if last else None))
        if chunk:
            shown.append(chunk["text"])
        if a.stopped:
            break
    final = a.finish()
    return shown, final


def test_cumulative_text() -> None:
    """Each chunk holds the whole text so far; the final chunk has finish_reason and usage."""
    shown, final = run(["a", "b", "c"], [], "length")
    assert shown == ["a", "ab", "abc"]
    assert final["text"] == "abc"
    assert final["finish_reason"] == "length"
    assert final["usage"] == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def test_stop_string_split_across_tokens_is_never_shown() -> None:
    """A stop string arriving in pieces is held back, then cut: nothing of it is ever shown."""
    shown, final = run(["Hello", " US", "ER", ":", " more"], ["USER:"])
    assert final["text"] == "Hello "
    assert final["finish_reason"] == "stop"
    assert all("US" not in s for s in shown)


def test_held_back_text_released_when_not_a_stop() -> None:
    """Text that looked like a stop's start is shown once it is known not to be one."""
    shown, final = run(["a US", "B"], ["USER:"])
    assert shown == ["a ", "a USB"]
    assert final["text"] == "a USB"


def test_held_back_text_released_at_end_of_stream() -> None:
    """At the end of the stream, a partial stop match is just text."""
    _, final = run(["x", "US"], ["USER:"])
    assert final["text"] == "xUS"


def test_stop_inside_a_single_token() -> None:
    """A token holding text, the stop string and more is cut at the stop."""
    _, final = run(["ab</s>cd"], ["</s>"])
    assert final["text"] == "ab"


def test_special_tokens_are_not_shown_but_counted() -> None:
    """`special: true` tokens (e.g. </s>) are not part of the text."""
    a = OutputAssembler()
    a.push(StreamEvent(text="hi"))
    a.push(StreamEvent(text="</s>", special=True, finish_reason="eos_token"))
    final = a.finish()
    assert final["text"] == "hi"
    assert final["finish_reason"] == "stop"
    assert final["usage"]["completion_tokens"] == 2


def test_reported_token_count_wins() -> None:
    """A container's generated_tokens replaces our count."""
    a = OutputAssembler()
    a.push(StreamEvent(text="hi"))
    a.push(StreamEvent(generated_tokens=7))
    assert a.finish()["usage"]["completion_tokens"] == 7


def test_generated_text_fallback() -> None:
    """A container that only reports generated_text at the end still produces text."""
    a = OutputAssembler()
    a.push(StreamEvent(generated_text="whole"))
    assert a.finish()["text"] == "whole"


@pytest.mark.parametrize(
    ("given_reason", "expected"),
    [
        ("length", "length"),
        ("max_tokens", "length"),
        ("eos_token", "stop"),
        ("stop_sequence", "stop"),
        ("STOP", "stop"),
        (None, "stop"),
        ("weird", "stop"),
    ],
)
def test_finish_reason_mapping(given_reason: str | None, expected: str) -> None:
    """Container finish reasons map to FastChat's stop/length."""
    assert fastchat_finish_reason(given_reason) == expected


@given(
    tokens=st.lists(st.text(alphabet="abUSER:<>/ ", max_size=4), max_size=30),
    stop=st.lists(st.text(alphabet="abUSER:<>/", min_size=1, max_size=5), max_size=3),
)
def test_text_only_grows_and_never_contains_a_stop(tokens: list[str], stop: list[str]) -> None:
    """Property: every chunk extends the previous one, and no shown text contains a stop string."""
    shown, final = run(tokens, stop)
    sequence = [*shown, final["text"]]
    for before, after in itertools.pairwise(sequence):
        assert after.startswith(before)
    for s in stop:
        assert s not in final["text"]
    joined = "".join(tokens)
    cuts = [joined.find(s) for s in stop if s in joined]
    assert final["text"] == (joined[: min(cuts)] if cuts else joined)


def test_logprobs_one_number_or_an_openai_object_with_alternatives() -> None:
    """TGI's `token.logprob` is one number (no alternatives: the API refuses top_logprobs for it); an
    OpenAI-style `logprobs` object carries each token's alternatives when the endpoint was asked."""
    tgi = OutputAssembler(logprobs=[])
    tgi.push(StreamEvent(text="a", logprobs=-0.5))
    assert tgi.finish().get("logprobs") == {"tokens": ["a"], "token_logprobs": [-0.5], "top_logprobs": [{}]}
    alts = [{"token": "a", "logprob": -0.1}, {"token": "b", "logprob": -2.0}]
    openai_style = OutputAssembler(logprobs=[])
    openai_style.push(
        StreamEvent(text="a", logprobs={"content": [{"token": "a", "logprob": -0.1, "top_logprobs": alts}]})
    )
    assert openai_style.finish().get("logprobs") == {
        "tokens": ["a"],
        "token_logprobs": [-0.1],
        "top_logprobs": [{"a": -0.1, "b": -2.0}],
    }
