"""The OpenAI-compatible API with the real `openai` client against a real stack: FastChat's controller,
our worker and API processes, moto SSM and the SageMaker stand-in. Every status, error and option the
README promises, and the checks of FastChat's own tests/test_openai_api.py (models, completion, chat,
streaming; embeddings are not supported and answer 404)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import psutil  # type: ignore[import-untyped]
import pytest

from sagemaker_fastchat.supervisor import http_ready
from tests.helpers import free_port
from tests.runtime_stack import CLI, RuntimeStack, model

KEY = "test-key-1"


@pytest.fixture(scope="module")
def stack(standin_url: str) -> Iterator[RuntimeStack]:
    s = RuntimeStack(standin_url)
    try:
        s.publish(
            [
                model("alpha"),
                model("beta", "lmi-jsonlines"),
                model("chatty", "openai-sse"),
                model("gone", endpoint_name="demo-tgi-broken"),
            ]
        )
        s.start_controller()
        s.start_worker()
        s.start_api("--api-keys", f"other-key,{KEY}", "--worker-timeout", "8")
        s.wait_version(1)
        s.wait_for(lambda: "chatty" in s.controller_models(), what="controller lists models")
        yield s
    finally:
        for c in _clients:
            c.close()
        s.close()


_clients: list[openai.OpenAI] = []  # closed at teardown (a collected client may leave a socket open)


def client(stack: RuntimeStack, **kw: Any) -> openai.OpenAI:
    c = openai.OpenAI(
        base_url=kw.pop("base_url", stack.api_url),
        api_key=kw.pop("api_key", KEY),
        max_retries=kw.pop("max_retries", 0),
        **kw,
    )
    _clients.append(c)
    return c


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def status_of(call: Any) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        call()
    return caught.value


def error_of(exc: openai.APIStatusError) -> dict[str, Any]:
    body = exc.body
    assert isinstance(body, dict), body
    assert set(body) == {"message", "type", "param", "code"}, body  # the SDK unwraps {"error": ...}
    return body


# --- FastChat's own checks (tests/test_openai_api.py), against our API -------------------------------
def test_list_models(stack: RuntimeStack) -> None:
    """GET /v1/models lists the live set (from the API's cache, no worker round trip)."""
    names = [m.id for m in client(stack).models.list().data]
    assert {"alpha", "beta", "chatty"} <= set(names)
    assert client(stack).models.retrieve("alpha").id == "alpha"


def test_completion(stack: RuntimeStack) -> None:
    """A legacy completion, non-streamed and streamed, with usage."""
    c = client(stack).completions.create(model="alpha", prompt="[[say:once upon a time]]", max_tokens=20)
    assert c.choices[0].text == "once upon a time"
    assert c.usage is not None
    assert c.usage.completion_tokens == 4
    text = "".join(
        chunk.choices[0].text
        for chunk in client(stack).completions.create(
            model="beta", prompt="[[say:streamed completion]]", max_tokens=20, stream=True
        )
        if chunk.choices
    )
    assert text == "streamed completion"


def test_chat_completion(stack: RuntimeStack) -> None:
    """A chat, non-streamed and streamed, with finish_reason; temperature 0 is accepted."""
    c = client(stack).chat.completions.create(
        model="alpha", messages=user("[[say:Hello there]]"), temperature=0, max_tokens=20
    )
    assert c.choices[0].message.content == "Hello there"
    assert c.choices[0].message.role == "assistant"
    assert c.choices[0].finish_reason == "stop"
    chunks = list(
        client(stack).chat.completions.create(
            model="beta", messages=user("[[tokens:5]]"), stream=True, max_tokens=3
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices[0].finish_reason == "length"
    assert "".join(c.choices[0].delta.content or "" for c in chunks).startswith("Demo model demo-lmi")


@pytest.mark.parametrize("name", ["alpha", "beta", "chatty"])
def test_fastchat_script_for_every_model(stack: RuntimeStack, name: str) -> None:
    """FastChat's tests/test_openai_api.py main, per listed model: completion with logprobs=1 at
    temperature 0, completion stream, chat, chat stream; embeddings answer 404 (documented)."""
    c = client(stack)
    completion = c.completions.create(
        model=name, prompt="Once upon a time", logprobs=1, max_tokens=64, temperature=0
    )
    text = completion.choices[0].text
    assert text.startswith("Demo model demo-")
    logprobs = completion.choices[0].logprobs
    if name == "alpha":  # TGI's config maps token.logprob
        assert logprobs is not None
        assert logprobs.token_logprobs is not None
        assert logprobs.token_logprobs[:3] == [-0.25] * 3
        assert "".join(logprobs.tokens or []) == text
    streamed = "".join(
        chunk.choices[0].text
        for chunk in c.completions.create(
            model=name, prompt="Once upon a time", max_tokens=64, stream=True, temperature=0
        )
        if chunk.choices
    )
    assert streamed == text
    messages = user("Hello! What is your name?")
    chat = c.chat.completions.create(model=name, messages=messages, temperature=0)
    assert (chat.choices[0].message.content or "").startswith("Demo model demo-")
    chunks = c.chat.completions.create(model=name, messages=messages, stream=True, temperature=0)
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == (
        chat.choices[0].message.content
    )
    with pytest.raises(openai.NotFoundError):
        c.embeddings.create(model=name, input="Hello world!")


# --- OpenAI semantics ------------------------------------------------------------------------------------
def test_include_usage_sends_a_final_usage_chunk(stack: RuntimeStack) -> None:
    """stream_options.include_usage: a last chunk with empty choices and the usage."""
    chunks = list(
        client(stack).chat.completions.create(
            model="alpha",
            messages=user("[[say:a b c]]"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 3
    assert last.usage.total_tokens == last.usage.prompt_tokens + 3
    assert all(c.usage is None for c in chunks[:-1])


def test_logprobs_through_tgis_config(stack: RuntimeStack) -> None:
    """TGI's config maps `token.logprob`: chat logprobs carry each token's value (stream and not)."""
    c = client(stack).chat.completions.create(model="alpha", messages=user("[[say:x y z]]"), logprobs=True)
    assert c.choices[0].logprobs is not None
    content = c.choices[0].logprobs.content or []
    assert [e.token for e in content] == ["x", " y", " z"]
    assert [e.logprob for e in content] == [-0.25] * 3
    streamed = [
        e.logprob
        for chunk in client(stack).chat.completions.create(
            model="alpha", messages=user("[[say:x y z]]"), logprobs=True, stream=True
        )
        if chunk.choices and chunk.choices[0].logprobs
        for e in chunk.choices[0].logprobs.content or []
    ]
    assert streamed == [-0.25] * 3
    plain = client(stack).chat.completions.create(model="alpha", messages=user("[[say:x]]"))
    assert plain.choices[0].logprobs is None


def test_multi_turn_arrives_as_messages(stack: RuntimeStack) -> None:
    """An OpenAI-style endpoint receives the conversation as separate messages with their roles."""
    turns = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first question here"},
        {"role": "assistant", "content": "answer"},
        {"role": "developer", "content": "note"},
        {"role": "user", "content": "[[roles]] again"},
    ]
    c = client(stack).chat.completions.create(model="chatty", messages=turns)
    assert c.choices[0].message.content == "system:2 user:3 assistant:1 system:1 user:2"
    bodies = httpx.get(f"{stack.standin_url}/_standin/requests", params={"endpoint": "demo-openai"}).json()
    sent = json.loads(bodies[-1]["body"])["messages"]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "system", "user"]
    assert sent[1]["content"] == "first question here"


def test_n_choices_and_cap(stack: RuntimeStack) -> None:
    """n choices up to the cap (4 by default); over it is a 400 naming `n`."""
    c = client(stack).chat.completions.create(model="alpha", messages=user("[[say:same]]"), n=3)
    assert [ch.index for ch in c.choices] == [0, 1, 2]
    assert {ch.message.content for ch in c.choices} == {"same"}
    texts = ["", ""]
    for chunk in client(stack).chat.completions.create(
        model="alpha", messages=user("[[say:both streamed]]"), n=2, stream=True
    ):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == ["both streamed", "both streamed"]
    err = status_of(lambda: client(stack).chat.completions.create(model="alpha", messages=user("x"), n=5))
    assert err.status_code == 400
    assert error_of(err)["param"] == "n"


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "hacker", "content": "x"}]}, "messages[0].role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages[0].content[0].type",
        ),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"tool_choice": "none"}, "tool_choice"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logit_bias": {"1": 1}}, "logit_bias"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": 5}, "temperature"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ],
)
def test_invalid_requests_are_400_naming_the_param(
    stack: RuntimeStack, kwargs: dict[str, Any], param: str
) -> None:
    """Unsupported or invalid parameters: 400 invalid_request_error naming the parameter, never ignored."""
    body: dict[str, Any] = {"model": "alpha", "messages": user("hi"), **kwargs}
    err = status_of(lambda: client(stack).chat.completions.create(**body))
    assert err.status_code == 400
    error = error_of(err)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


@pytest.mark.parametrize(
    ("model_name", "kwargs", "param"),
    [
        ("alpha", {"presence_penalty": 0.5}, "presence_penalty"),  # tgi.json maps no penalties
        ("beta", {"frequency_penalty": 1.0}, "frequency_penalty"),  # nor does lmi-jsonlines.json
        ("chatty", {"extra_body": {"top_k": 5}}, "top_k"),  # openai-sse.json maps no top_k
        ("chatty", {"extra_body": {"repetition_penalty": 1.2}}, "repetition_penalty"),
        ("alpha", {"logprobs": True, "top_logprobs": 2}, "top_logprobs"),  # token.logprob: one number
    ],
)
def test_parameters_the_config_cannot_carry_are_refused(
    stack: RuntimeStack, model_name: str, kwargs: dict[str, Any], param: str
) -> None:
    """A parameter the model's endpoint config does not map used to be dropped silently: 400 naming it,
    and how to fix the config. Neutral values (OpenAI's defaults) and mapped parameters pass."""
    body: dict[str, Any] = {"model": model_name, "messages": user("[[say:x]]"), **kwargs}
    err = status_of(lambda: client(stack).chat.completions.create(**body))
    assert err.status_code == 400
    error = error_of(err)
    assert (error["param"], error["code"]) == (param, "unsupported_parameter")
    assert f"model {model_name}'s endpoint config" in error["message"]
    assert "request.mapping" in error["message"]


def test_neutral_and_mapped_parameters_pass(stack: RuntimeStack) -> None:
    c = client(stack)
    neutral = c.chat.completions.create(
        model="alpha",
        messages=user("[[say:fine]]"),
        presence_penalty=0,
        frequency_penalty=0,
        n=1,
        top_p=1,
        temperature=1,
    )
    assert neutral.choices[0].message.content == "fine"
    mapped = c.chat.completions.create(
        model="chatty", messages=user("hi"), presence_penalty=0.5, extra_body={"top_k": -1}
    )
    assert (mapped.choices[0].message.content or "").startswith("Demo model demo-")
    err = status_of(lambda: c.completions.create(model="alpha", prompt="[[say:x]]", frequency_penalty=0.5))
    assert error_of(err)["param"] == "frequency_penalty"


def test_raw_http_errors(stack: RuntimeStack) -> None:
    """Invalid JSON is a 400, a body over 4 MB a 413; neither echoes server paths."""
    url = f"{stack.api_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    r = httpx.post(url, content=b"{not json", headers=headers)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "body"
    big = json.dumps({"model": "alpha", "messages": user("x" * (5 * 1024 * 1024))})
    r = httpx.post(url, content=big, headers=headers)
    assert r.status_code == 413
    for text in (r.text, httpx.post(url, content=b"[", headers=headers).text):
        assert ".py" not in text
        assert "/work" not in text
        assert "site-packages" not in text


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_non_json_content_type_is_415(stack: RuntimeStack, content_type: str) -> None:
    """A JSON body sent as a form or text (what a web page may POST cross-site without a preflight) is
    refused with 415, not answered."""
    body = json.dumps({"model": "alpha", "messages": user("hi"), "max_tokens": 4})
    headers = {"Authorization": f"Bearer {KEY}", "Content-Type": content_type}
    r = httpx.post(f"{stack.api_url}/chat/completions", content=body, headers=headers)
    assert r.status_code == 415
    assert r.json()["error"]["code"] == "unsupported_media_type"


def test_unknown_model_is_404(stack: RuntimeStack) -> None:
    """An unknown model: 404 model_not_found."""
    err = status_of(lambda: client(stack).chat.completions.create(model="nope", messages=user("x")))
    assert isinstance(err, openai.NotFoundError)
    assert error_of(err)["code"] == "model_not_found"


def test_embeddings_not_supported(stack: RuntimeStack) -> None:
    """/v1/embeddings answers 404 with a clear "not supported" message."""
    err = status_of(lambda: client(stack).embeddings.create(model="alpha", input="x"))
    assert err.status_code == 404
    assert "not supported" in error_of(err)["message"]


def test_throttling_is_429_and_retried(stack: RuntimeStack) -> None:
    """An endpoint throttle is a 429 with Retry-After, which the openai client retries."""
    seen: list[httpx.Response] = []
    with httpx.Client(event_hooks={"response": [seen.append]}) as http:
        c = client(stack, max_retries=1, http_client=http)
        with pytest.raises(openai.RateLimitError) as caught:
            c.chat.completions.create(model="alpha", messages=user("[[throttle]]"), stream=True)
    assert [r.status_code for r in seen] == [429, 429]  # retried once
    assert seen[0].headers["retry-after"] == "1"
    message = error_of(caught.value)["message"]
    assert "alpha" in message
    assert "demo-tgi" in message


@pytest.mark.parametrize(
    ("model_name", "prompt", "status", "names"),
    [
        ("beta", "[[fail-after:0]]", 502, ("beta", "demo-lmi")),
        ("gone", "hi", 502, ("gone", "demo-tgi-broken")),
        ("alpha", "[[ttft:12]]", 504, ("alpha", "demo-tgi")),
    ],
)
def test_endpoint_failures(
    stack: RuntimeStack, model_name: str, prompt: str, status: int, names: Any
) -> None:
    """An endpoint failing, missing or silent (past the API's timeout, here 8 s): 502/504 naming model
    and endpoint, never FastChat's "high traffic" headline."""
    err = status_of(lambda: client(stack).chat.completions.create(model=model_name, messages=user(prompt)))
    assert err.status_code == status
    message = error_of(err)["message"]
    assert all(n in message for n in names), message
    assert "HIGH TRAFFIC" not in message.upper()


def test_error_mid_stream_is_an_error_event(stack: RuntimeStack) -> None:
    """A failure after text has streamed: an error event, which the client raises; then it ends."""
    stream = client(stack).chat.completions.create(
        model="beta", messages=user("[[tokens:30]] [[fail-after:3]]"), stream=True
    )
    texts: list[str] = []

    def read() -> None:
        texts.extend((c.choices[0].delta.content or "") if c.choices else "" for c in stream)

    with pytest.raises(openai.APIError) as caught:
        read()
    text = "".join(texts)
    assert text.startswith("Demo model demo-lmi")
    assert "ModelStreamError" in str(caught.value)
    assert "beta" in str(caught.value)
    # On the wire: the error is the last event; no finish chunk and no [DONE] follow it (README)
    body = {"model": "beta", "messages": user("[[tokens:30]] [[fail-after:3]]"), "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", f"{stack.api_url}/chat/completions", json=body, headers=headers) as r:
        assert r.status_code == 200
        events = [line for line in r.iter_lines() if line]
    assert "data: [DONE]" not in events
    assert events[0].startswith("data: {")
    assert "error" in json.loads(events[-1].removeprefix("data: "))
    assert not any("error" in json.loads(e.removeprefix("data: ")) for e in events[:-1])


def test_auth_on_every_route(stack: RuntimeStack) -> None:
    """Every /v1 route needs a key (missing or wrong: 401); FastChat's /api/v1 routes, /docs and
    /openapi.json do not exist; /health is open (load balancers)."""
    base = stack.api_url.removesuffix("/v1")
    routes = [
        ("GET", "/v1/models", None),
        ("GET", "/v1/models/alpha", None),
        ("POST", "/v1/chat/completions", {"model": "alpha", "messages": user("x")}),
        ("POST", "/v1/completions", {"model": "alpha", "prompt": "x"}),
        ("POST", "/v1/embeddings", {"model": "alpha", "input": "x"}),
        ("POST", "/v1/anything", {}),
    ]
    for method, path, body in routes:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
            r = httpx.request(method, base + path, json=body, headers=headers)
            assert r.status_code == 401, (path, headers, r.text)
            assert r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    for path in ("/api/v1/chat/completions", "/api/v1/token_check", "/docs", "/openapi.json"):
        for method in ("GET", "POST"):
            assert httpx.request(method, base + path, json={}).status_code == 404, path
    assert httpx.get(f"{base}/health").status_code == 200
    err = status_of(client(stack, api_key="wrong").models.list)
    assert isinstance(err, openai.AuthenticationError)
    assert client(stack, api_key="other-key").models.list().data


def test_several_api_processes(stack: RuntimeStack) -> None:
    """`--workers 2` runs two API processes on one port; both serve (each with its own cache), and each
    builds its app from the command's settings: a flag's (`--api-keys`) and a variable's (`API_MAX_N`).
    Every request comes on a new connection, so whichever process takes it, it must apply them."""
    port, key = free_port(), "multi-process-key"
    argv = [*CLI, "api", "--port", str(port), "--controller-address", stack.controller_url, "--workers", "2"]
    env = {**stack.env(), "API_MAX_N": "1"}
    stack.sup.start("api2", [*argv, "--api-keys", key], env, http_ready(f"http://127.0.0.1:{port}/health"))
    fresh = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))  # no connection is reused
    try:
        stack.sup.wait_ready(["api2"])
        c = client(stack, base_url=f"http://127.0.0.1:{port}/v1", api_key=key, http_client=fresh)
        stranger = client(stack, base_url=f"http://127.0.0.1:{port}/v1", api_key=KEY, http_client=fresh)
        stack.wait_for(lambda: "alpha" in {m.id for m in c.models.list().data}, what="api2 lists models")
        for i in range(8):
            reply = c.chat.completions.create(model="alpha", messages=user(f"[[say:process {i}]]"))
            assert reply.choices[0].message.content == f"process {i}"
            assert isinstance(status_of(stranger.models.list), openai.AuthenticationError)  # not its keys
            capped = status_of(lambda: c.chat.completions.create(model="alpha", messages=user("x"), n=2))
            assert (capped.status_code, error_of(capped)["param"]) == (400, "n")
        children = psutil.Process(stack.sup.children["api2"].process.pid).children(recursive=True)
        assert len([p for p in children if "python" in p.name().lower()]) >= 2
    finally:
        fresh.close()
        stack.sup.stop("api2")


def test_a_whole_answer_whose_client_left_stops_its_endpoint_calls(stack: RuntimeStack) -> None:
    """A non-streamed request whose client hangs up ends its worker streams at once (n=2: both), instead
    of running 1,000 tokens to the end for nobody."""
    from tests.helpers import standin_streams, wait_for_streams

    _, abandoned = standin_streams(stack.standin_url)
    body = {"model": "alpha", "messages": user("[[tokens:1000]] [[rate:20]] long"), "n": 2}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{stack.api_url}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=httpx.Timeout(30, read=2),
        )
    wait_for_streams(stack.standin_url, (0, abandoned + 2))


def test_a_parameter_the_worker_refuses_is_a_400_not_an_unreachable_worker(stack: RuntimeStack) -> None:
    """A seed beyond the worker's range (its own check) comes back as the worker's 400, naming the
    parameter; it was a 503 'worker cannot be reached: HTTP 400'."""
    exc = status_of(
        lambda: client(stack).chat.completions.create(model="alpha", messages=user("hi"), seed=2**63)
    )
    assert exc.status_code == 400
    err = error_of(exc)
    assert err["param"] == "seed"
    assert err["type"] == "invalid_request_error"
    assert "cannot be reached" not in err["message"]
