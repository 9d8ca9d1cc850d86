"""OpenAI request validation, prompt building, frame parsing and error mapping (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastchat.constants import SERVER_ERROR_MSG, ErrorCode
from fastchat.conversation import get_conv_template

from contract.spec import parse_model_item
from runtime import openai_protocol as p
from tests.helpers import example_item


def chat(**changes: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **changes}


def refusal(body: Any, parse: Any = p.parse_chat) -> p.ApiError:
    with pytest.raises(p.ApiError) as caught:
        parse(body)
    return caught.value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(messages=[]), "messages"),
        (chat(messages=None), "messages"),
        (chat(messages="hi"), "messages"),
        (chat(messages=[{"role": "hacker", "content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].role"),
        (chat(messages=["x"]), "messages[0]"),
        (chat(messages=[{"role": "user", "content": 3}]), "messages[0].content"),
        (
            chat(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]),
            "messages[0].content[0].type",
        ),
        (
            chat(messages=[{"role": "user", "content": [{"type": "input_audio"}]}]),
            "messages[0].content[0].type",
        ),
        (chat(tools=[{"type": "function"}]), "tools"),
        (chat(tool_choice="auto"), "tool_choice"),
        (chat(functions=[]), "functions"),
        (chat(logit_bias={"1": 2}), "logit_bias"),
        (chat(response_format={"type": "json_object"}), "response_format"),
        (chat(audio={"voice": "x"}), "audio"),
        (chat(n=5), "n"),
        (chat(n=0), "n"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens=1 << 30), "max_tokens"),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=float("nan")), "temperature"),
        (chat(top_p=2), "top_p"),
        (chat(stop=[1]), "stop"),
        (chat(stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat(seed="x"), "seed"),
        (chat(stream_options={"include_usage": True}), "stream_options"),
        (chat(top_logprobs=2), "top_logprobs"),
        (chat(logprobs=True, top_logprobs=21), "top_logprobs"),
        (chat(model=None), "model"),
        (chat(wat=1), "wat"),
        ([1, 2], "body"),
    ],
)
def test_chat_refusals_name_the_parameter(body: Any, param: str) -> None:
    """Every invalid or unsupported chat request is a 400 invalid_request_error naming its parameter."""
    err = refusal(body)
    assert err.status == 400
    assert err.body()["error"]["type"] == "invalid_request_error"
    assert err.body()["error"]["param"] == param


def test_chat_request_accepted() -> None:
    """Roles (developer as system), text parts, usage option and logprobs are taken as given."""
    req = p.parse_chat(
        chat(
            messages=[
                {"role": "developer", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": "c"},
                {"role": "user", "content": "d"},
            ],
            stream=True,
            stream_options={"include_usage": True},
            n=2,
            max_completion_tokens=7,
            logprobs=True,
            top_logprobs=3,
            response_format={"type": "text"},
            user="u",
            tools=None,
        )
    )
    assert req.messages == (("system", "be brief"), ("user", "a\nb"), ("assistant", "c"), ("user", "d"))
    assert (req.stream, req.include_usage, req.n, req.max_tokens) == (True, True, 2, 7)
    assert (req.logprobs, req.top_logprobs) == (True, 3)


def test_n_cap_is_configurable() -> None:
    """The n cap comes from the limits."""
    assert p.parse_chat(chat(n=8), p.Limits(max_n=8)).n == 8
    assert refusal(chat(n=9), lambda b: p.parse_chat(b, p.Limits(max_n=8))).param == "n"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "prompt": ["a", "b"]}, "prompt"),
        ({"model": "m", "prompt": [1, 2]}, "prompt"),
        ({"model": "m", "prompt": "x", "echo": True}, "echo"),
        ({"model": "m", "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": "m", "prompt": "x", "best_of": 3}, "best_of"),
        ({"model": "m", "prompt": "x", "logprobs": 6}, "logprobs"),
    ],
)
def test_completion_refusals(body: Any, param: str) -> None:
    """Unsupported completion features are refused with a 400 naming them."""
    assert refusal(body, p.parse_completion).param == param


def test_worker_params_from_a_template() -> None:
    """The prompt follows the FastChat template; the template's stop string joins the request's; the
    OpenAI messages go along for configs that map them."""
    req = p.parse_chat(
        chat(
            messages=[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
            stop="X",
            temperature=0,
            max_tokens=10,
        )
    )
    params = p.worker_params(req, get_conv_template("llama-2"), 4096)
    assert params["prompt"].startswith("[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST]")
    assert params["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    assert params["stop"] == ["X"]
    assert params["temperature"] == 0
    assert params["max_new_tokens"] == 10
    vicuna = p.worker_params(req, get_conv_template("vicuna_v1.1"), None)
    assert "USER: Q ASSISTANT:" in vicuna["prompt"]
    assert vicuna["max_new_tokens"] == 10  # no context length known: the request's
    unbounded = p.worker_params(p.parse_chat(chat()), get_conv_template("raw"), None)
    assert "max_new_tokens" not in unbounded  # nothing known: the config's default applies


def test_context_length_bounds_max_tokens() -> None:
    """max_tokens is at most what the context leaves; a prompt over the context is a 400."""
    req = p.parse_chat(chat(messages=[{"role": "user", "content": "x" * 400}]))
    conv = get_conv_template("raw")
    assert p.worker_params(req, conv, 150)["max_new_tokens"] == 50
    with pytest.raises(p.ApiError) as caught:
        p.worker_params(req, conv, 80)
    assert caught.value.body()["error"]["code"] == "context_length_exceeded"


def test_template_from_a_worker_answer() -> None:
    """A worker's /worker_get_conv_template answer becomes the same Conversation."""
    import dataclasses

    conv = get_conv_template("vicuna_v1.1")
    data = dataclasses.asdict(conv)
    data["sep_style"] = int(conv.sep_style)
    rebuilt = p.conversation_from_worker(orjson.loads(orjson.dumps(data)))
    msgs = (("user", "hi"),)
    assert p.chat_prompt(rebuilt, msgs) == p.chat_prompt(conv, msgs)


def test_frames_split_anywhere() -> None:
    """NUL-separated frames cut at any byte are reassembled."""
    data = b"".join(orjson.dumps({"text": t, "error_code": 0}) + b"\0" for t in ("a", "ab", "abc"))
    for cut in range(len(data)):
        s = p.FrameSplitter()
        frames = s.feed(data[:cut]) + s.feed(data[cut:]) + s.close()
        assert [f["text"] for f in frames] == ["a", "ab", "abc"]


def test_a_frame_that_is_not_json_is_a_bad_gateway() -> None:
    """A frame that does not parse becomes an error frame of FastChat's shape, with our `error` object,
    which the API answers as 502 naming the model and the worker; the frames around it are kept."""
    frames = p.FrameSplitter().feed(b'{"text": "a", "error_code": 0}\0{not json\0[1]\0')
    assert [f["error_code"] for f in frames] == [0, ErrorCode.INTERNAL_ERROR]  # not a dict: skipped
    assert frames[1]["error"]["kind"] == "endpoint_error"
    err = p.worker_error(frames[1], "alpha", "worker http://w")
    assert (err.status, err.code) == (502, "endpoint_error")
    assert err.message == "model alpha (worker http://w): the worker sent a frame that is not JSON"


def test_choice_deltas_and_logprobs() -> None:
    """Cumulative text becomes deltas; FastChat's cumulative logprobs become the new tokens only."""
    c = p.Choice(0)
    assert c.advance({"text": "He"}) == "He"
    lp = {"tokens": ["He", "llo"], "token_logprobs": [-0.1, -0.2], "top_logprobs": [{"He": -0.1}, None]}
    assert c.advance({"text": "Hello", "logprobs": lp, "finish_reason": "stop"}) == "llo"
    assert c.new_logprobs({"logprobs": lp}) == [("He", -0.1, [("He", -0.1)]), ("llo", -0.2, [])]
    assert c.new_logprobs({"logprobs": lp}) == []
    assert c.finish_reason == "stop"
    out = p.chat_logprobs([("He", -0.1, [("He", -0.1)])], 1)
    assert out["content"][0]["top_logprobs"][0]["token"] == "He"


def test_another_workers_error_names_the_model_even_when_its_text_holds_the_name() -> None:
    """Another FastChat worker's error text gets "model NAME (where):" in front, even when the model's
    name happens to occur in it ("m" in "out of memory"); our worker's "model m: ..." is left alone."""
    other = p.worker_error({"text": "CUDA out of memory", "error_code": 50002}, "m", "worker http://w")
    assert other.message == "model m (worker http://w): CUDA out of memory"
    ours = p.worker_error({"text": "model m: endpoint e failed", "error_code": 50001}, "m", "endpoint e")
    assert ours.message == "model m: endpoint e failed"


@pytest.mark.parametrize(
    ("frame", "status", "code"),
    [
        ({"error_code": ErrorCode.RATE_LIMIT}, 429, "rate_limit_exceeded"),
        ({"error_code": ErrorCode.INVALID_MODEL}, 404, "model_not_found"),
        ({"error_code": ErrorCode.VALIDATION_TYPE_ERROR}, 400, "invalid_value"),
        ({"error_code": ErrorCode.CONTEXT_OVERFLOW}, 400, "context_length_exceeded"),
        ({"error_code": ErrorCode.INTERNAL_ERROR}, 502, "endpoint_error"),
        ({"error_code": ErrorCode.CONTROLLER_WORKER_TIMEOUT}, 504, "timeout"),
        ({"error_code": 12345}, 502, "endpoint_error"),
        ({"error_code": ErrorCode.INTERNAL_ERROR, "error": {"kind": "timeout"}}, 504, "timeout"),
        # Our worker's kinds, as its README table says (runtime/adapter.py's kinds).
        (
            {"error_code": ErrorCode.INTERNAL_ERROR, "error": {"kind": "endpoint_error"}},
            502,
            "endpoint_error",
        ),
        (
            {"error_code": ErrorCode.ENGINE_OVERLOADED, "error": {"kind": "unavailable"}},
            503,
            "endpoint_unavailable",
        ),
        ({"error_code": ErrorCode.INVALID_MODEL, "error": {"kind": "not_found"}}, 404, "model_not_found"),
        ({"error_code": ErrorCode.INTERNAL_ERROR, "error": {"kind": "internal"}}, 500, "internal_error"),
        (
            {"error_code": ErrorCode.INTERNAL_ERROR, "error": {"kind": "throttled"}},
            429,
            "rate_limit_exceeded",
        ),
        (
            {
                "error_code": ErrorCode.VALIDATION_TYPE_ERROR,
                "error": {"kind": "invalid_request", "param": "stop"},
            },
            400,
            "invalid_value",
        ),
    ],
)
def test_worker_errors_map_to_openai(frame: dict[str, Any], status: int, code: str) -> None:
    """FastChat error codes (any worker) and our worker's error kinds become OpenAI statuses; FastChat's
    "NETWORK ERROR DUE TO HIGH TRAFFIC" headline never reaches the client; 429 carries Retry-After."""
    frame = {"text": f"{SERVER_ERROR_MSG}\n\n(model m: endpoint e is throttling)", **frame}
    err = p.worker_error(frame, "m", "endpoint e")
    assert (err.status, err.code) == (status, code)
    assert "HIGH TRAFFIC" not in err.message
    assert err.message == "model m: endpoint e is throttling"
    assert ("Retry-After" in err.headers()) == (status == 429)
    if "error" in frame and "param" in frame["error"]:
        assert err.param == "stop"
    event = orjson.loads(err.event()[len(b"data: ") :])
    assert set(event["error"]) == {"message", "type", "param", "code"}


def test_chunks_are_openai_shaped() -> None:
    """Chunks and full responses carry OpenAI's fields."""
    r = p.Reply("chatcmpl-1", 1, "m", chat=True)
    doc = orjson.loads(r.chunk(0, "x", None)[6:])
    assert doc["choices"][0]["delta"] == {"content": "x"}
    assert orjson.loads(r.chunk(0, None, None, role=True)[6:])["choices"][0]["delta"]["role"] == "assistant"
    c = p.Choice(0, "x", "length", {"prompt_tokens": 2, "completion_tokens": 1})
    full = r.full([c], [None])
    assert full["choices"][0]["message"]["content"] == "x"
    assert full["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def test_an_unknown_models_name_is_echoed_bounded() -> None:
    """A 100 KB model name is not sent back whole in the 404 (every size a user controls is bounded)."""
    error = p.model_not_found("x" * 100_000)
    assert error.status == 404
    assert error.code == "model_not_found"
    assert len(error.message) < 300
    assert "100,000 characters" in error.message
    assert "`short`" in p.model_not_found("short").message


@pytest.mark.parametrize(
    ("model", "why"), [(5, "must be a non-empty string, not int"), (None, "is required")]
)
def test_a_model_that_is_not_a_string_says_so(model: object, why: str) -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}]}
    if model is not None:
        body["model"] = model
    with pytest.raises(p.ApiError) as caught:
        p.parse_chat(body, p.Limits())
    assert caught.value.param == "model"
    assert why in caught.value.message


# What the shipped TGI config maps (sagemaker_fastchat/examples/tgi.json): no penalties.
_TGI = parse_model_item(example_item("tgi"))
TGI_REQUEST, TGI_RESPONSE = frozenset(_TGI.request_mapping), frozenset(_TGI.response_mapping)


def mapped_refusal(body: Any, parse: Any = p.parse_chat) -> p.ApiError:
    with pytest.raises(p.ApiError) as caught:
        p.check_mapped(parse(body), TGI_REQUEST, TGI_RESPONSE)
    return caught.value


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(presence_penalty=0.5), "presence_penalty"),
        (chat(frequency_penalty=-1), "frequency_penalty"),
        (chat(logprobs=True, top_logprobs=2), "top_logprobs"),
    ],
)
def test_a_parameter_the_config_does_not_map_is_refused(body: Any, param: str) -> None:
    """Silently dropped before: the config has no field to carry it. 400, `param` names it, the message
    names the model and says how to fix it."""
    err = mapped_refusal(body)
    assert (err.status, err.param, err.code) == (400, param, "unsupported_parameter")
    assert err.message.startswith("model m's endpoint config")
    assert f"`{param}`; remove it" in err.message
    completion = {"model": "m", "prompt": "x", "presence_penalty": 1}
    assert mapped_refusal(completion, p.parse_completion).param == "presence_penalty"


def test_unmapped_parameters_by_their_carrying_field() -> None:
    """max_tokens / max_completion_tokens travel as max_new_tokens; logprobs needs the response's."""
    no_max = TGI_REQUEST - {"max_new_tokens"}
    for key in ("max_tokens", "max_completion_tokens"):
        with pytest.raises(p.ApiError) as caught:
            p.check_mapped(p.parse_chat(chat(**{key: 5})), no_max, TGI_RESPONSE)
        assert caught.value.param == key
        assert "`max_new_tokens` (what" in caught.value.message
    with pytest.raises(p.ApiError) as caught:
        p.check_mapped(p.parse_chat(chat(logprobs=True)), TGI_REQUEST, frozenset({"text"}))
    assert caught.value.param == "logprobs"
    for key, value in (("top_k", 5), ("repetition_penalty", 1.2), ("seed", 0), ("temperature", 0.5)):
        with pytest.raises(p.ApiError) as caught:
            p.check_mapped(p.parse_chat(chat(**{key: value})), frozenset({"prompt"}), TGI_RESPONSE)
        assert caught.value.param == key


@pytest.mark.parametrize(
    "changes",
    [
        # OpenAI's defaults (FastChat's for top_k / repetition_penalty) mean "not set": SDKs send them
        {"presence_penalty": 0, "frequency_penalty": 0.0, "n": 1, "top_p": 1, "temperature": 1},
        {"top_k": -1, "repetition_penalty": 1.0, "stop": ["x"], "logprobs": False, "top_logprobs": 0},
        {"presence_penalty": None, "seed": None, "max_tokens": None},
    ],
)
def test_neutral_values_pass_whatever_is_mapped(changes: dict[str, Any]) -> None:
    p.check_mapped(p.parse_chat(chat(**changes)), frozenset({"prompt"}), frozenset({"text"}))


def test_mapped_parameters_and_other_workers_pass() -> None:
    body = chat(presence_penalty=0.5, top_k=3, seed=1, max_tokens=9, logprobs=True, top_logprobs=2)
    everything = TGI_REQUEST | {"presence_penalty", "top_logprobs"}
    p.check_mapped(p.parse_chat(body), everything, TGI_RESPONSE)
    p.check_mapped(p.parse_chat(body), None, None)  # a FastChat worker that publishes no mapping
    # a legacy completion's logprobs=N is also its on-switch (FastChat's own check sends logprobs=1)
    p.check_mapped(
        p.parse_completion({"model": "m", "prompt": "x", "logprobs": 1}), TGI_REQUEST, TGI_RESPONSE
    )


def test_worker_params_carry_top_logprobs_for_a_config_that_maps_it() -> None:
    req = p.parse_chat(chat(logprobs=True, top_logprobs=3))
    params = p.worker_params(req, get_conv_template("raw"), None)
    assert (params["logprobs"], params["top_logprobs"]) == (3, 3)
    assert "top_logprobs" not in p.worker_params(
        p.parse_chat(chat(logprobs=True)), get_conv_template("raw"), None
    )
