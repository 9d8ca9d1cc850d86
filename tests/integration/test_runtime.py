"""The runtime end to end: a real FastChat controller process, our worker and OpenAI API processes,
moto SSM, the SageMaker stand-in; the real `openai` client streams chats while the model set changes."""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from contract.snapshot import manifest_name
from tests.runtime_stack import PREFIX, RuntimeStack, model


@pytest.fixture(scope="module")
def stack(standin_url: str) -> Iterator[RuntimeStack]:
    s = RuntimeStack(standin_url)
    try:
        s.publish([model("alpha"), model("beta", "lmi-jsonlines")])
        s.start()
        s.wait_version(1)
        s.wait_for(lambda: set(s.controller_models()) >= {"alpha", "beta"}, what="controller lists models")
        yield s
    finally:
        s.close()


def client(stack: RuntimeStack) -> openai.OpenAI:
    return openai.OpenAI(base_url=stack.api_url, api_key="none", max_retries=0, timeout=60)


def stream_chat(stack: RuntimeStack, model_name: str, prompt: str, **kw: Any) -> tuple[str, str | None]:
    text, finish = "", None
    stream = client(stack).chat.completions.create(
        model=model_name, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=200, **kw
    )
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
    return text, finish


def test_models_listed_and_chat_streams(stack: RuntimeStack) -> None:
    """The OpenAI API lists the live set and streams a chat through controller -> worker -> endpoint."""
    listed = {m.id for m in client(stack).models.list().data}
    assert {"alpha", "beta"} <= listed
    text, finish = stream_chat(stack, "alpha", "[[say:Hello from the stand-in]]")
    assert text == "Hello from the stand-in"
    assert finish == "stop"


def test_non_streaming_chat(stack: RuntimeStack) -> None:
    """A non-streamed chat (the API reads the worker's stream to its end)."""
    reply = client(stack).chat.completions.create(
        model="beta", messages=[{"role": "user", "content": "[[say:non streaming works]]"}], max_tokens=50
    )
    assert reply.choices[0].message.content == "non streaming works"


def test_worker_introspection(stack: RuntimeStack) -> None:
    """/model-set shows version, models with endpoint and hash; /ready is 200 once loaded and registered."""
    state = stack.model_set()
    assert state["version"] >= 1
    names = {m["name"]: m for m in state["models"]}
    assert names["alpha"]["endpoint_name"] == "demo-tgi"
    assert len(names["alpha"]["hash"]) == 16
    assert httpx.get(f"{stack.worker_url}/ready").status_code == 200


def test_conv_template_applies_in_the_api_path(stack: RuntimeStack) -> None:
    """A model's conv_template is what the worker serves to the API."""
    conv = httpx.post(f"{stack.worker_url}/worker_get_conv_template", json={"model": "gamma"}).json()["conv"]
    assert conv["name"] == "plain"  # a name FastChat does not recognise: neutral turns, not one_shot
    result = stack.publish(
        [model("alpha"), model("beta", "lmi-jsonlines"), model("gamma", conv_template="llama-2")]
    )
    stack.wait_version(result.version or 0)
    conv = httpx.post(f"{stack.worker_url}/worker_get_conv_template", json={"model": "gamma"}).json()["conv"]
    assert conv["name"] == "llama-2"


def test_hot_swap_with_streams_in_flight(stack: RuntimeStack) -> None:
    """Add, change and remove models while 24 streams are open: none fails or is truncated, each ends with
    the text of the endpoint it started on, and the worker's version advanced while each was open."""
    base = [model("alpha"), model("beta", "lmi-jsonlines")]
    start = stack.publish(base).version or 0
    stack.wait_version(start)
    # ~10 s per stream: on a loaded CI machine starting 24 streams and the swap's propagation took
    # longer than the 4 s streams this used, so the earliest stream ended before the swap.
    tokens = 150
    prompt = f"[[tokens:{tokens}]] [[rate:15]]"
    started = threading.Semaphore(0)

    def run(i: int) -> tuple[str, str, str | None, float, float]:
        name = "alpha" if i % 2 else "beta"
        text, finish, first = "", None, 0.0
        stream = client(stack).chat.completions.create(
            model=name, messages=[{"role": "user", "content": prompt}], stream=True, max_tokens=200
        )
        for chunk in stream:
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
                if not first and text:
                    first = time.monotonic()
                    started.release()
        return name, text, finish, first, time.monotonic()

    swap_seen: list[float] = []
    done = threading.Event()

    def watch(version: int) -> None:
        while not done.is_set() and not swap_seen:
            # Introspection is best effort here; the streams are what is under test.
            with contextlib.suppress(httpx.HTTPError):
                if (stack.model_set().get("version") or 0) >= version:
                    swap_seen.append(time.monotonic())
            time.sleep(0.05)

    with ThreadPoolExecutor(24) as pool:
        futures = [pool.submit(run, i) for i in range(24)]
        for _ in range(24):  # every stream has received text before the model set changes
            assert started.acquire(timeout=30), "a stream did not start"
        changed = stack.publish(
            [model("alpha", endpoint_name="demo-tgi-v2"), model("delta", "openai-sse")],
            active=["alpha", "delta"],
        )
        watcher = threading.Thread(target=watch, args=(changed.version or 0,), daemon=True)
        watcher.start()
        try:
            results = [f.result() for f in futures]
        finally:
            done.set()
            watcher.join()
    assert changed.changed == ["alpha"]
    assert changed.added == ["delta"]
    assert changed.removed == ["beta"]
    assert swap_seen, "the worker never reported the new version"
    for name, text, finish, first, end in results:
        endpoint = "demo-tgi" if name == "alpha" else "demo-lmi"
        assert text.startswith(f"Demo model {endpoint} (not a real LLM):"), text
        assert len(text.split()) == 7 + tokens - 1  # 7 header words + the reply's: nothing truncated
        assert finish == "stop"
        assert first < swap_seen[0] < end  # the version advanced while this stream was open
    stack.wait_version(stack.publish(base).version or 0)


def test_after_a_swap(stack: RuntimeStack) -> None:
    """A changed model serves its new endpoint, an added one is served, a removed one is a clear error."""
    base = [model("alpha"), model("beta", "lmi-jsonlines")]
    stack.wait_version(stack.publish(base).version or 0)
    swapped = stack.publish(
        [model("alpha", endpoint_name="demo-tgi-v2"), model("delta", "openai-sse")], active=["alpha", "delta"]
    )
    stack.wait_version(swapped.version or 0)
    assert stream_chat(stack, "alpha", "[[tokens:3]]")[0].startswith("Demo model demo-tgi-v2")
    assert stream_chat(stack, "delta", "[[say:added]]")[0] == "added"
    stack.wait_for(lambda: "beta" not in stack.controller_models(), what="controller drops beta")
    with pytest.raises(openai.NotFoundError, match=r"beta"):
        stream_chat(stack, "beta", "hi")
    stack.wait_version(stack.publish(base).version or 0)


def test_damaged_snapshot_keeps_last_good_set(stack: RuntimeStack) -> None:
    """A manifest whose model hash does not match the parameter: the worker keeps serving its last good
    set, reports the error on /model-set, and recovers with the next good publish."""
    good = stack.publish([model("alpha"), model("beta", "lmi-jsonlines")])
    stack.wait_version(good.version or 0)
    published = stack.store.load_manifest()
    assert published is not None
    body = published.manifest.body()
    body["models"][0][3] = "0000000000000000"  # alpha's hash no longer matches its parameter
    stack.store.put(manifest_name(PREFIX), json.dumps(body))
    stack.wait_for(lambda: stack.model_set().get("last_error") is not None, what="worker reports the error")
    state = stack.model_set()
    assert state["version"] == good.version
    assert "differs from the manifest" in state["last_error"]
    assert stream_chat(stack, "alpha", "[[say:still served]]")[0] == "still served"
    fixed = stack.publish([model("alpha", endpoint_name="demo-tgi-fixed"), model("beta", "lmi-jsonlines")])
    stack.wait_version(fixed.version or 0)
    assert stack.model_set()["last_error"] is None


def test_ssm_outage_keeps_serving(stack: RuntimeStack) -> None:
    """With SSM unreachable the worker keeps its set, reports the error, and recovers afterwards."""
    stack.moto.stop()
    try:
        stack.wait_for(lambda: stack.model_set().get("last_error") is not None, what="outage reported")
        assert stream_chat(stack, "alpha", "[[say:during outage]]")[0] == "during outage"
    finally:
        stack.moto = type(stack.moto)(ip_address="127.0.0.1", port=stack.moto_port, verbose=False)
        stack.moto.start()
    recovered = stack.publish(
        [model("alpha", endpoint_name="demo-tgi-after"), model("beta", "lmi-jsonlines")]
    )
    stack.wait_version(recovered.version or 0)


def test_endpoint_failing_mid_stream(stack: RuntimeStack) -> None:
    """A ModelStreamError mid-stream reaches the client as an error; the worker keeps working."""
    with pytest.raises(openai.APIError) as caught:
        stream_chat(stack, "beta", "[[tokens:30]] [[fail-after:3]]")
    assert "ModelStreamError" in str(caught.value)
    assert stream_chat(stack, "beta", "[[say:fine again]]")[0] == "fine again"


def test_controller_restart(stack: RuntimeStack) -> None:
    """A restarted controller forgets workers; the worker's heartbeat re-registers it."""
    stack.sup.stop("controller")
    stack.start_controller()
    stack.wait_for(lambda: "alpha" in stack.controller_models(), timeout=20, what="worker re-registered")
    assert stream_chat(stack, "alpha", "[[say:after restart]]")[0] == "after restart"


def test_errors_reach_api_clients_as_clear_text(stack: RuntimeStack) -> None:
    """A throttled endpoint reaches the OpenAI client as 'model X: endpoint Y is throttling requests',
    never FastChat's generic 'high traffic' line, and the worker keeps serving."""
    with pytest.raises(openai.APIError) as caught:
        stream_chat(stack, "alpha", "[[throttle]]")
    message = str(caught.value)
    assert re.search(r"model alpha: endpoint demo-tgi\S* is throttling requests; try again shortly", message)
    assert "TRAFFIC" not in message.upper()
    assert stream_chat(stack, "alpha", "[[say:fine again]]")[0] == "fine again"
