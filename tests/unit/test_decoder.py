"""The incremental stream decoder: correct for any split of the byte stream, every line shape."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.decoder import StreamDecodeError, StreamDecoder, StreamEvent
from contract.spec import ModelSpec, parse_model_item
from sagemaker_fastchat.standin import demo
from tests.helpers import example_item

SPECS = {
    "tgi": parse_model_item(example_item("tgi")),
    "openai": parse_model_item(example_item("openai-sse")),
    "lmi": parse_model_item(example_item("lmi-jsonlines")),
}


def stream_for(fmt: str, say: str, **kw: Any) -> bytes:
    body = {"inputs": f"[[say:{say}]]", "messages": [{"content": f"[[say:{say}]]"}], **kw}
    return b"".join(demo.render_lines(fmt, f"demo-{fmt}", demo.plan(fmt, f"demo-{fmt}", body)))


def decode_whole(spec: ModelSpec, data: bytes) -> list[dict[str, Any]]:
    return [asdict(e) for e in StreamDecoder(spec).decode([data])]


def decode_split(spec: ModelSpec, data: bytes, cuts: list[int]) -> list[dict[str, Any]]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    parts = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return [asdict(e) for e in StreamDecoder(spec).decode(parts)]


def texts(events: list[dict[str, Any]]) -> str:
    return "".join(e["text"] or "" for e in events if not e["special"])


SAY = "Héllo wörld — ünïcode 😀 split across parts, done."


@pytest.mark.parametrize("fmt", sorted(SPECS))
def test_every_single_split_offset(fmt: str) -> None:
    """Cutting the stream in two at every byte offset gives the same events as one part."""
    data = stream_for(fmt, SAY)
    whole = decode_whole(SPECS[fmt], data)
    assert texts(whole) == SAY
    for offset in range(len(data) + 1):
        assert decode_split(SPECS[fmt], data, [offset]) == whole


@pytest.mark.parametrize("fmt", sorted(SPECS))
@settings(max_examples=150, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40),
    say=st.text(min_size=1, max_size=40),
)
def test_any_split_of_any_text(fmt: str, cuts: list[int], say: str) -> None:
    """Random splits (many parts, one-byte parts, mid-character) never change what is decoded."""
    say = say.replace("]", "") or "x"
    data = stream_for(fmt, say)
    whole = decode_whole(SPECS[fmt], data)
    assert decode_split(SPECS[fmt], data, cuts) == whole
    assert texts(whole) == say


@pytest.mark.parametrize("fmt", sorted(SPECS))
def test_one_byte_parts(fmt: str) -> None:
    """A part per byte, the worst case for reassembly."""
    data = stream_for(fmt, SAY)
    events = list(StreamDecoder(SPECS[fmt]).decode([data[i : i + 1] for i in range(len(data))]))
    assert texts([asdict(e) for e in events]) == SAY


def test_crlf_blank_lines_comments_and_sse_fields() -> None:
    """CRLF endings, blank separators, `: comments`, event:/id:/retry: fields are all handled."""
    data = (
        b": keep-alive\r\n\r\nevent: message\r\nid: 7\r\nretry: 100\r\n"
        b'data:{"token":{"text":"a","special":false}}\r\n\r\n'
        b'data:{"token":{"text":"b","special":false}}\r\n'
    )
    assert texts(decode_whole(SPECS["tgi"], data)) == "ab"


def test_last_line_without_newline_is_flushed() -> None:
    """The seed looped forever here: a last line with no trailing newline is decoded at close."""
    data = b'{"token":{"text":"a"}}\n{"token":{"text":"b"}}'
    decoder = StreamDecoder(SPECS["lmi"])
    assert [e.text for e in decoder.feed(data)] == ["a"]
    assert [e.text for e in decoder.close()] == ["b"]


def test_done_sentinel_ends_the_stream() -> None:
    """Nothing after [DONE] is decoded."""
    data = b'data: {"choices":[{"delta":{"content":"a"}}]}\n\ndata: [DONE]\n\ndata: {"choices":[{"delta":{"content":"z"}}]}\n'
    assert texts(decode_whole(SPECS["openai"], data)) == "a"


def test_line_where_text_finds_nothing_adds_no_text() -> None:
    """OpenAI's first chunk carries only the role: it is an event with no text."""
    data = b'data: {"choices":[{"delta":{"role":"assistant"}}]}\n\n'
    events = decode_whole(SPECS["openai"], data)
    assert len(events) == 1
    assert events[0]["text"] is None


def test_blank_sse_lines_never_repeat_a_chunk() -> None:
    """The seed re-sent the previous chunk on blank SSE lines: blank lines yield nothing."""
    data = b'data:{"token":{"text":"a"}}\n\n\n\n\ndata:\n\n'
    assert [e["text"] for e in decode_whole(SPECS["tgi"], data)] == ["a"]


@pytest.mark.parametrize(
    ("fmt", "line", "message"),
    [
        (
            "tgi",
            b'data:{"error":"Input validation error: too long","error_type":"validation"}\n',
            "Input validation error: too long (validation)",
        ),
        (
            "openai",
            b'data: {"error":{"message":"bad","type":"invalid_request_error"}}\n',
            "bad (invalid_request_error)",
        ),
        ("lmi", b'{"object":"error","message":"vllm says no"}\n', "vllm says no"),
    ],
)
def test_error_objects_end_the_stream(fmt: str, line: bytes, message: str) -> None:
    """A line carrying an error ends the stream as an error event; later lines are ignored."""
    decoder = StreamDecoder(SPECS[fmt])
    events = decoder.feed(line + b'{"token":{"text":"after"}}\n')
    assert len(events) == 1
    assert events[0].error == message
    assert decoder.done


def test_not_json_names_model_and_line() -> None:
    """A line that is not JSON after regex_sub is a clear error naming model and line (truncated)."""
    with pytest.raises(StreamDecodeError) as caught:
        StreamDecoder(SPECS["tgi"]).feed(b"data:<html>" + b"x" * 500 + b"\n")
    text = str(caught.value)
    assert text.startswith("demo-tgi: a streamed line is not JSON")
    assert "<html>" in text
    assert len(text) < 400


def test_several_json_values_on_one_line() -> None:
    """`Extra data`: values back to back on one line each become an event."""
    data = b'{"token":{"text":"a"}}{"token":{"text":"b"}} {"token":{"text":"c"}}\n'
    assert texts(decode_whole(SPECS["lmi"], data)) == "abc"


def test_special_and_details_mapped() -> None:
    """TGI's special flag, finish reason and token count are mapped."""
    data = (
        b'data:{"token":{"text":"</s>","special":true},"generated_text":"hi",'
        b'"details":{"finish_reason":"eos_token","generated_tokens":3}}\n'
    )
    (event,) = StreamDecoder(SPECS["tgi"]).decode([data])
    assert event == StreamEvent(
        text="</s>",
        special=True,
        finish_reason="eos_token",
        generated_text="hi",
        generated_tokens=3,
        logprobs=None,
    )


def test_invalid_utf8_is_a_clear_error() -> None:
    """Bytes that are not UTF-8 are reported, not mis-decoded."""
    with pytest.raises(StreamDecodeError, match="not UTF-8"):
        StreamDecoder(SPECS["lmi"]).feed(b'{"token":{"text":"\xff"}}\n')


def test_non_plain_response_paths_use_jsonpath() -> None:
    """Response paths may be any JSONPath (here a filter), read with jsonpath-ng."""
    item = example_item("lmi-jsonlines")
    item["endpoint_req_config"]["response"]["mapping"]["text"] = "$.outputs[*]"
    (event,) = StreamDecoder(parse_model_item(item)).decode([b'{"outputs":["x","y"]}\n'])
    assert event.text == "x"


def _with_regex(pattern: str) -> ModelSpec:
    item = example_item("tgi")
    item["endpoint_req_config"]["response"]["regex_sub"] = pattern
    return parse_model_item(item)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("pattern", ["(a+)+$", "(a|aa)+$", "(a*)*b$", "(\\w+\\s?)*$"])
def test_catastrophic_regex_decodes_a_long_adversarial_line(pattern: str) -> None:
    """regex_sub runs on RE2: a pattern that backtracks exponentially in Python's `re` (this line would
    take longer than the universe) decodes a 100,000-character adversarial line at once."""
    spec = _with_regex(pattern)
    line = '{"token": {"text": "a"}, "pad": "' + "a" * 100_000 + '!"}\n'
    events = decode_whole(spec, line.encode())
    assert [e["text"] for e in events] == ["a"]


def test_regex_sub_removes_every_match_through_re2() -> None:
    """A pattern RE2 runs (not a literal prefix) removes each match, as Python's `re.sub` would."""
    spec = _with_regex("^(?:data|event):[ \\t]*|,\\s*$")
    events = decode_whole(spec, b'data:  {"token": {"text": "x"}},\n')
    assert [e["text"] for e in events] == ["x"]


PREFIX_PATTERNS = ["^data:", "^data:\\s*", "^", "^data: ", "^x-y_z/1\\s*"]


@pytest.mark.parametrize("pattern", PREFIX_PATTERNS)
@settings(max_examples=200, deadline=None)
@given(line=st.text(alphabet=st.sampled_from("data: \t\r\n\x0b\x0cx-y_z/1{}é"), max_size=20))
def test_literal_prefix_shortcut_equals_re2(pattern: str, line: str) -> None:
    """The literal-prefix shortcut gives exactly RE2's result for any line."""
    from contract.line_regex import LineRegex

    regex = LineRegex(pattern)
    assert regex._prefix is not None  # the shortcut is taken
    assert regex.sub(line) == regex.sub_re2(line)


def test_deeply_nested_line_is_a_decode_error() -> None:
    """A line nested past Python's stack or holding a 5,000-digit number is a clear decode error."""
    for line in (b"[" * 100_000 + b"]" * 100_000, b'{"token": {"text": ' + b"9" * 5000 + b"}}"):
        with pytest.raises(StreamDecodeError, match="demo-lmi: a streamed line cannot be read"):
            decode_whole(SPECS["lmi"], line + b"\n")


RE2_PATTERNS = ["^data:[ \\t]*", "^d[a-z]+:", "[0-9]+", "a|b:", ",\\s*$", "^(?:data|id):", "x*", "(ab)+"]


@pytest.mark.parametrize("pattern", RE2_PATTERNS)
@settings(max_examples=200, deadline=None)
@given(line=st.text(alphabet=st.sampled_from("dataid:, \t0123456789abx{}é"), max_size=24))
def test_re2_sub_equals_python_re_on_simple_patterns(pattern: str, line: str) -> None:
    """For patterns both engines read alike, RE2's substitution gives Python's `re.sub` result."""
    import re

    from contract.line_regex import LineRegex

    assert LineRegex(pattern).sub(line) == re.sub(pattern, "", line)
