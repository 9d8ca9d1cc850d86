"""Request building: defaults + mapped FastChat parameters, with no example value leaking into a chat."""

from __future__ import annotations

from typing import Any

import pytest

from contract.request import (
    MAX_STOP_CHARS,
    MAX_STOP_SENT,
    MAX_STOP_STRINGS,
    RequestError,
    build_request,
    normalize_stop,
)
from contract.spec import parse_model_item
from tests.helpers import example_item

TGI = parse_model_item(example_item("tgi"))
OPENAI = parse_model_item(example_item("openai-sse"))
LMI = parse_model_item(example_item("lmi-jsonlines"))


def tgi(**params: Any) -> dict[str, Any]:
    return build_request(TGI, {"prompt": "Hi", **params})


def test_prompt_and_stream_always_written() -> None:
    """The example prompt never reaches a chat, and requests always stream."""
    body = tgi()
    assert body["inputs"] == "Hi"
    assert body["stream"] is True
    assert build_request(OPENAI, {"prompt": "Hi"})["messages"][0]["content"] == "Hi"


def test_messages_reach_chat_style_bodies() -> None:
    """A config mapping `messages` gets the request's turns with their roles; a prompt-only request (the
    web UI) becomes one user message; the prompt is still required."""
    turns = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q1"},
        {"role": "assistant", "content": "A1"},
        {"role": "user", "content": "Q2"},
    ]
    assert build_request(OPENAI, {"prompt": "flat", "messages": turns})["messages"] == turns
    assert build_request(OPENAI, {"prompt": "Hi", "messages": "junk"})["messages"] == [
        {"role": "user", "content": "Hi"}
    ]
    with pytest.raises(RequestError):
        build_request(OPENAI, {"messages": turns})


def test_example_stop_and_seed_never_leak() -> None:
    """The seed's defaults stop at 'photographer': unset stop and seed are removed from the body."""
    params = tgi()["parameters"]
    assert "stop" not in params
    assert "seed" not in params


@pytest.mark.parametrize(
    ("stop", "sent"),
    [(None, None), ("", None), ([], None), ("</s>", ["</s>"]), (["a", "b", "a"], ["a", "b"])],
)
def test_stop_forms(stop: Any, sent: Any) -> None:
    """stop may be None, a string or a list; duplicates and empties are dropped."""
    assert tgi(stop=stop)["parameters"].get("stop") == sent


def test_stop_list_capped_for_containers() -> None:
    """At most 4 stop strings are sent (TGI's limit); the rest are enforced while decoding."""
    stops = [f"s{i}" for i in range(7)]
    assert tgi(stop=stops)["parameters"]["stop"] == stops[:MAX_STOP_SENT]
    assert normalize_stop(stops) == stops


def test_greedy_on_tgi_sets_do_sample_false_and_drops_sampling_params() -> None:
    """TGI rejects temperature 0: greedy becomes do_sample false with no sampling parameters."""
    params = tgi(temperature=0.0, top_p=0.5, top_k=5)["parameters"]
    assert params["do_sample"] is False
    for key in ("temperature", "top_p", "top_k", "typical_p"):
        assert key not in params


def test_sampling_on_tgi() -> None:
    """A positive temperature samples: do_sample true, temperature as given."""
    params = tgi(temperature=0.7, top_p=0.9, top_k=40)["parameters"]
    assert (params["do_sample"], params["temperature"], params["top_p"], params["top_k"]) == (
        True,
        0.7,
        0.9,
        40,
    )


def test_explicit_do_sample_wins() -> None:
    """A caller that sets do_sample itself is obeyed."""
    assert tgi(temperature=0.7, do_sample=False)["parameters"]["do_sample"] is False


def test_top_p_one_and_top_k_minus_one_mean_off() -> None:
    """FastChat's 'off' values are removed, never sent (TGI rejects top_p 1.0 and top_k -1)."""
    params = tgi(temperature=0.7, top_p=1.0, top_k=-1)["parameters"]
    assert "top_p" not in params
    assert "top_k" not in params


def test_openai_style_sends_temperature_zero_as_is() -> None:
    """Without a do_sample mapping, temperature 0 is sent (OpenAI-style servers accept it)."""
    body = build_request(OPENAI, {"prompt": "Hi", "temperature": 0.0, "max_new_tokens": 9})
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 9
    assert "do_sample" not in body


def test_unset_fields_keep_operator_defaults() -> None:
    """Fields the request does not set keep the defaults' value (operator settings)."""
    params = tgi()["parameters"]
    assert params["max_new_tokens"] == 20
    assert params["temperature"] == 0.5
    assert params["details"] is True


def test_extra_mapped_fields_are_written() -> None:
    """Any other mapped key (e.g. TGI's return_full_text) is written when the request sets it."""
    assert tgi(return_full_text=True)["parameters"]["return_full_text"] is True


def test_missing_intermediate_objects_are_created() -> None:
    """A mapped path whose parents are absent from the defaults is created."""
    item = example_item("lmi-jsonlines")
    item["endpoint_req_config"]["request"]["mapping"]["seed"] = "$.extra.deep.seed"
    body = build_request(parse_model_item(item), {"prompt": "x", "seed": 7})
    assert body["extra"]["deep"]["seed"] == 7


def test_no_prompt_is_refused() -> None:
    """A request without prompt text is an error, not a request with the example prompt."""
    with pytest.raises(RequestError, match="no prompt"):
        build_request(TGI, {})


def test_building_never_mutates_the_spec() -> None:
    """Concurrent requests share the spec: building one must not change another's defaults."""
    tgi(stop=["x"], temperature=0.0)
    assert TGI.request_defaults["parameters"]["stop"] == ["photographer"]
    assert TGI.request_defaults["parameters"]["temperature"] == 0.5


def test_lmi_stop_goes_to_stop_sequences() -> None:
    """Each container gets stops at its own mapped path."""
    assert build_request(LMI, {"prompt": "x", "stop": "END"})["parameters"]["stop_sequences"] == ["END"]


@pytest.mark.parametrize(
    ("stop", "words"),
    [
        (5, "not int"),
        ({"a": 1}, "not dict"),
        ([f"s{i}" for i in range(MAX_STOP_STRINGS + 1)], f"the limit is {MAX_STOP_STRINGS}"),
        (["x" * (MAX_STOP_CHARS + 1)], f"longer than {MAX_STOP_CHARS}"),
    ],
)
def test_unservable_stop_is_a_request_error(stop: Any, words: str) -> None:
    """A `stop` of the wrong type or beyond the bounds is refused with the reason (never a TypeError),
    and normalize_stop stays total for the assembler."""
    with pytest.raises(RequestError, match=words):
        tgi(stop=stop)
    assert len(normalize_stop(stop)) <= MAX_STOP_STRINGS


def test_top_logprobs_reaches_an_openai_style_endpoint_that_maps_it() -> None:
    """The API refuses a chat's top_logprobs unless the config maps `top_logprobs`; mapped, the requested
    number is written (the endpoint returns the alternatives in the mapped `logprobs` object)."""
    item = example_item("openai-sse")
    config = item["endpoint_req_config"]
    request = {
        **config["request"],
        "defaults": {**config["request"]["defaults"], "logprobs": True},
        "mapping": {**config["request"]["mapping"], "top_logprobs": "$.top_logprobs"},
    }
    spec = parse_model_item({**item, "endpoint_req_config": {**config, "request": request}})
    body = build_request(spec, {"prompt": "Hi", "logprobs": 3, "top_logprobs": 3})
    assert (body["logprobs"], body["top_logprobs"]) == (True, 3)
    assert "top_logprobs" not in build_request(spec, {"prompt": "Hi"})
