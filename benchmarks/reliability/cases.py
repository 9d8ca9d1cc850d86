"""The bad inputs: malformed registry writes (CLI, offline validation, raw table writes) and malformed
API / worker requests. Pure data; bad_input.py sends them and judges the answers."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal

from tests.helpers import DELETE, set_path  # the same one-field edits the unit tests make

Channel = Literal["put", "validate", "raw", "all-models"]
VICTIM = "victim"  # the listed model the raw writes target
VICTIM_ENDPOINT = "demo-tgi-victim"
# Nested quantifiers, catastrophic for a backtracking engine, accepted by design: RE2 runs regex_sub in
# time linear in the line (README "Stream decoding"). Each keeps the TGI example's `^data:` so the model
# still answers, and the harness checks it does, promptly, with nothing else changed.
RE2_ACCEPTS = "accepted by design: RE2 runs it in linear time"
CATASTROPHIC = "^data:|(a+)+$"
CATASTROPHIC_2 = "^data:|(x+x+)+y"


# The CI subset (tests/reliability/): a few of each kind, chosen to cover every item of issue 13 in about
# two minutes; the full profile runs every case.
CI_REGISTRY = (
    "put-path-1200-steps",
    "validate-path-1200-steps",
    "raw-config-bad-json",
    "raw-path-60-steps",
    "raw-conv-template-unknown",
    "all-models-number",
)
CI_REQUESTS = (
    "api-temperature-string",
    "api-role-hacker",
    "api-messages-empty",
    "api-model-unknown",
    "worker-temperature-string",
    "worker-stop-number",
    "worker-invalid-json",
)
CI_FAULTS = ("endpoint-fails-mid-stream", "no-first-token", "worker-killed", "ssm-503", "ssm-blackhole")


def tgi_config() -> dict[str, Any]:
    text = resources.files("sagemaker_fastchat.examples").joinpath("tgi.json").read_text()
    return dict(copy.deepcopy(json.loads(text)["endpoint_req_config"]))


def path(steps: int) -> str:
    return "$" + ".a" * steps


DEEP = "@@deep@@"  # stands for a deeply nested object in a config; json cannot encode that deep itself


def nested_json(config: Any, depth: int = 1000) -> str:
    """`config` as JSON text with its DEEP placeholder replaced by an object nested `depth` levels."""
    return json.dumps(config).replace(json.dumps(DEEP), '{"a":' * depth + '"leaf"' + "}" * depth)


def with_request(**changes: Any) -> dict[str, Any]:
    config = tgi_config()
    for dotted, value in changes.items():
        set_path(config, dotted.split("__"), value)
    return config


_DELETE = DELETE


@dataclass(frozen=True)
class RegistryCase:
    id: str
    what: str
    channel: Channel
    name: str = "bad-model"
    endpoint: str = "demo-tgi-bad"
    config: Any = (
        None  # put/validate: the JSON file's content (None: a valid TGI config); raw file text if str
    )
    args: tuple[str, ...] = ()
    item: dict[str, Any] = field(default_factory=dict)  # raw / all-models: a typed DynamoDB item
    accepted: str = ""  # why accepting this input is right ("" when it must be refused)


def _victim(**attrs: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model_name": {"S": VICTIM},
        "endpoint_name": {"S": VICTIM_ENDPOINT},
        "endpoint_req_config": {"S": json.dumps(tgi_config())},
    }
    base.update(attrs)
    return {k: v for k, v in base.items() if v is not None}


def _cfg(config: Any) -> dict[str, str]:
    return {"S": json.dumps(config)}


def _names(value: Any) -> dict[str, Any]:
    return {"model_name": {"S": "all-models"}, **({"model_names": value} if value is not None else {})}


def registry_cases() -> list[RegistryCase]:
    long_path = path(1200)
    c: list[RegistryCase] = [
        # --- `models put` through the CLI: refused before anything is written ----------------------
        RegistryCase("put-endpoint-bad-chars", "endpoint 'not valid!'", "put", endpoint="not valid!"),
        RegistryCase(
            "put-endpoint-64-chars", "endpoint of 64 characters", "put", endpoint="demo-tgi-" + "x" * 55
        ),
        RegistryCase("put-endpoint-empty", "endpoint ''", "put", endpoint=""),
        RegistryCase("put-name-comma", "name 'a,b'", "put", name="a,b"),
        RegistryCase("put-name-all-models", "name 'all-models'", "put", name="all-models"),
        RegistryCase("put-name-65-chars", "name of 65 characters", "put", name="n" * 65),
        RegistryCase("put-name-leading-space", "name ' lead'", "put", name=" lead"),
        RegistryCase("put-name-control-char", "name with BEL", "put", name="bad\x07name"),
        RegistryCase("put-name-rtl-override", "name with U+202E", "put", name="\u202egnp.exe"),
        RegistryCase("put-name-zero-width", "name U+200B only", "put", name="\u200b"),
        RegistryCase("put-name-bom", "name starting with U+FEFF", "put", name="\ufeffbom"),
        RegistryCase(
            "put-conv-template-unknown",
            "--conv-template no-such-template",
            "put",
            args=("--conv-template", "no-such-template"),
        ),
        RegistryCase("put-context-length-0", "--context-length 0", "put", args=("--context-length", "0")),
        RegistryCase(
            "put-context-length-negative", "--context-length -5", "put", args=("--context-length", "-5")
        ),
        RegistryCase(
            "put-context-length-huge",
            "--context-length 10**15",
            "put",
            args=("--context-length", str(10**15)),
        ),
        RegistryCase("put-config-not-json", "config file '{not json'", "put", config="{not json"),
        RegistryCase("put-config-list", "config [1, 2]", "put", config=[1, 2]),
        RegistryCase("put-config-string", 'config "hello"', "put", config='"hello"'),
        RegistryCase("put-config-null", "config null", "put", config="null"),
        RegistryCase("put-config-empty-object", "config {}", "put", config={}),
        RegistryCase(
            "put-no-prompt-mapping",
            "request.mapping.prompt missing",
            "put",
            config=with_request(request__mapping__prompt=_DELETE),
        ),
        RegistryCase(
            "put-no-text-mapping",
            "response.mapping.text missing",
            "put",
            config=with_request(response__mapping__text=_DELETE),
        ),
        RegistryCase(
            "put-path-number",
            "mapping.prompt = 123",
            "put",
            config=with_request(request__mapping__prompt=123),
        ),
        RegistryCase(
            "put-path-garbage",
            "mapping.prompt 'not a path'",
            "put",
            config=with_request(request__mapping__prompt="not a path"),
        ),
        RegistryCase(
            "put-path-60-steps",
            "a 60-step JSONPath",
            "put",
            config=with_request(response__mapping__text=path(60)),
        ),
        RegistryCase(
            "put-path-1200-steps",
            "a 1,200-step JSONPath",
            "put",
            config=with_request(response__mapping__text=long_path),
        ),
        RegistryCase(
            "put-path-10k-chars",
            "a JSONPath with a 10,000-character field",
            "put",
            config=with_request(response__mapping__text="$." + "a" * 10_000),
        ),
        RegistryCase(
            "put-path-filter",
            "a filter JSONPath $[?(@.x)]",
            "put",
            config=with_request(response__mapping__text="$[?(@.x)].text"),
        ),
        RegistryCase(
            "put-regex-catastrophic",
            f"regex_sub {CATASTROPHIC!r}",
            "put",
            config=with_request(response__regex_sub=CATASTROPHIC),
            accepted=RE2_ACCEPTS,
        ),
        RegistryCase(
            "put-regex-catastrophic-2",
            f"regex_sub {CATASTROPHIC_2!r}",
            "put",
            config=with_request(response__regex_sub=CATASTROPHIC_2),
            accepted=RE2_ACCEPTS,
        ),
        RegistryCase(
            "put-regex-invalid", "regex_sub '['", "put", config=with_request(response__regex_sub="[")
        ),
        RegistryCase(
            "put-regex-number", "regex_sub 123", "put", config=with_request(response__regex_sub=123)
        ),
        RegistryCase(
            "put-regex-10k",
            "regex_sub of 10,000 characters",
            "put",
            config=with_request(response__regex_sub="a" * 10_000),
        ),
        RegistryCase(
            "put-defaults-deep",
            "defaults nested 1,000 levels",
            "put",
            config=nested_json(with_request(request__defaults=DEEP)),
        ),
        RegistryCase(
            "put-defaults-huge",
            "defaults holding a 300 KB string",
            "put",
            config=with_request(request__defaults={"inputs": "", "pad": "x" * 300_000}),
        ),
        RegistryCase("put-defaults-list", "defaults [1]", "put", config=with_request(request__defaults=[1])),
        RegistryCase(
            "put-500-mapped-fields",
            "500 mapped fields",
            "put",
            config=with_request(
                request__mapping={"prompt": "$.inputs", **{f"f{i}": f"$.f{i}" for i in range(500)}}
            ),
        ),
        RegistryCase(
            "put-10k-stop-strings",
            "defaults with 10,000 stop strings",
            "put",
            config=with_request(request__defaults={"inputs": "", "parameters": {"stop": ["s"] * 10_000}}),
        ),
        RegistryCase(
            "put-mapping-object",
            "mapping.prompt = {}",
            "put",
            config=with_request(request__mapping__prompt={}),
        ),
        RegistryCase(
            "put-mapping-nul-key",
            "a mapped field named NUL",
            "put",
            config=with_request(request__mapping={"prompt": "$.inputs", "\u0000": "$.x"}),
        ),
        RegistryCase(
            "put-description-100k", "--description of 100 KB", "put", args=("--description", "d" * 100_000)
        ),
        RegistryCase(
            "put-context-length-string",
            "item file with context_length '4k'",
            "put",
            config={"endpoint_req_config": tgi_config(), "context_length": "4k"},
        ),
        RegistryCase(
            "put-conv-template-number",
            "item file with conv_template 123",
            "put",
            config={"endpoint_req_config": tgi_config(), "conv_template": 123},
        ),
        RegistryCase(
            "put-nan",
            "defaults holding NaN",
            "put",
            config=json.dumps(with_request(request__defaults={"inputs": "", "t": 1})).replace("1}", "NaN}"),
        ),
        # --- `config validate` (offline) --------------------------------------------------------------
        RegistryCase(
            "validate-path-1200-steps",
            "a 1,200-step JSONPath",
            "validate",
            config={
                "model_name": "m",
                "endpoint_name": "demo-tgi",
                "endpoint_req_config": with_request(response__mapping__text=long_path),
            },
        ),
        RegistryCase(
            "validate-json-deep", "a JSON document nested 100,000 levels", "validate", config="[" * 100_000
        ),
        RegistryCase("validate-binary", "a binary file", "validate", config="\x80\x81\xfe\xff"),
        RegistryCase("validate-empty-file", "an empty file", "validate", config=""),
        RegistryCase(
            "validate-regex-catastrophic",
            "regex_sub '(a+)+$'",
            "validate",
            config={
                "model_name": "m",
                "endpoint_name": "demo-tgi",
                "endpoint_req_config": with_request(response__regex_sub="(a+)+$"),
            },
            accepted=RE2_ACCEPTS,
        ),
        # --- raw table writes (boto3, no CLI validation): the sync must reject, the last good spec serve --
        RegistryCase(
            "raw-config-number",
            "endpoint_req_config N 5",
            "raw",
            item=_victim(endpoint_req_config={"N": "5"}),
        ),
        RegistryCase(
            "raw-config-bad-json",
            "endpoint_req_config '{oops'",
            "raw",
            item=_victim(endpoint_req_config={"S": "{oops"}),
        ),
        RegistryCase(
            "raw-path-1200-steps",
            "a 1,200-step JSONPath",
            "raw",
            item=_victim(endpoint_req_config=_cfg(with_request(response__mapping__text=long_path))),
        ),
        RegistryCase(
            "raw-path-60-steps",
            "a 60-step JSONPath",
            "raw",
            item=_victim(endpoint_req_config=_cfg(with_request(response__mapping__text=path(60)))),
        ),
        RegistryCase(
            "raw-regex-catastrophic",
            f"regex_sub {CATASTROPHIC!r}",
            "raw",
            item=_victim(endpoint_req_config=_cfg(with_request(response__regex_sub=CATASTROPHIC))),
            accepted=RE2_ACCEPTS,
        ),
        RegistryCase(
            "raw-conv-template-unknown",
            "conv_template 'no-such-template'",
            "raw",
            item=_victim(conv_template={"S": "no-such-template"}),
        ),
        RegistryCase(
            "raw-context-length-0", "context_length 0", "raw", item=_victim(context_length={"N": "0"})
        ),
        RegistryCase(
            "raw-context-length-negative",
            "context_length -1",
            "raw",
            item=_victim(context_length={"N": "-1"}),
        ),
        RegistryCase(
            "raw-context-length-string",
            "context_length 'lots'",
            "raw",
            item=_victim(context_length={"S": "lots"}),
        ),
        RegistryCase(
            "raw-endpoint-64-chars",
            "endpoint_name of 64 characters",
            "raw",
            item=_victim(endpoint_name={"S": "demo-tgi-" + "y" * 55}),
        ),
        RegistryCase(
            "raw-endpoint-list",
            "endpoint_name a list",
            "raw",
            item=_victim(endpoint_name={"L": [{"S": "demo-tgi"}]}),
        ),
        RegistryCase("raw-endpoint-missing", "no endpoint_name", "raw", item=_victim(endpoint_name=None)),
        RegistryCase(
            "raw-config-map-wrong-types",
            "endpoint_req_config a map of booleans",
            "raw",
            item=_victim(endpoint_req_config={"M": {"request": {"BOOL": True}, "response": {"BOOL": False}}}),
        ),
        RegistryCase(
            "raw-description-300k",
            "description of 300 KB",
            "raw",
            item=_victim(description={"S": "d" * 300_000}),
        ),
        RegistryCase(
            "raw-defaults-deep",
            "defaults nested 1,000 levels",
            "raw",
            item=_victim(endpoint_req_config={"S": nested_json(with_request(request__defaults=DEEP))}),
        ),
        RegistryCase(
            "raw-stop-10k",
            "10,000 stop strings in defaults",
            "raw",
            item=_victim(
                endpoint_req_config=_cfg(
                    with_request(request__defaults={"inputs": "", "parameters": {"stop": ["s"] * 10_000}})
                )
            ),
        ),
        # --- the all-models item ----------------------------------------------------------------------
        RegistryCase("all-models-number", "model_names N 5", "all-models", item=_names({"N": "5"})),
        RegistryCase(
            "all-models-list", "model_names a list", "all-models", item=_names({"L": [{"S": "demo-tgi"}]})
        ),
        RegistryCase(
            "all-models-10k-names",
            "model_names with 10,000 names",
            "all-models",
            item=_names({"S": ",".join(f"model-{i}" for i in range(10_000))}),
        ),
        RegistryCase(
            "all-models-300k-name",
            "model_names holding one 300 KB name",
            "all-models",
            item=_names({"S": "n" * 300_000}),
        ),
        RegistryCase(
            "all-models-missing-attr", "all-models without model_names", "all-models", item=_names(None)
        ),
        RegistryCase("all-models-deleted", "the all-models item deleted", "all-models", item={}),
    ]
    return c


@dataclass(frozen=True)
class RequestCase:
    id: str
    what: str
    target: Literal["api", "worker"]
    path: str
    body: Any  # JSON-encoded unless bytes
    content_type: str = "application/json"
    method: str = "POST"
    accepted: str = ""  # why answering this request normally is right ("" when it must be refused)


def _chat(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": "demo-tgi",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    }
    for key, value in changes.items():
        if value is _DELETE:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def _gen(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "demo-tgi", "prompt": "hi", "temperature": 0.0, "max_new_tokens": 16}
    for key, value in changes.items():
        if value is _DELETE:
            body.pop(key, None)
        else:
            body[key] = value
    return body


def request_cases() -> list[RequestCase]:
    chat = "/v1/chat/completions"
    gen = "/worker_generate_stream"
    r: list[RequestCase] = [
        RequestCase("api-temperature-string", "temperature 'hot'", "api", chat, _chat(temperature="hot")),
        RequestCase("api-temperature-negative", "temperature -1", "api", chat, _chat(temperature=-1)),
        RequestCase("api-temperature-huge", "temperature 1e308", "api", chat, _chat(temperature=1e308)),
        RequestCase("api-top-p-string", "top_p 'x'", "api", chat, _chat(top_p="x")),
        RequestCase("api-top-p-5", "top_p 5", "api", chat, _chat(top_p=5)),
        RequestCase("api-stop-number", "stop 5", "api", chat, _chat(stop=5)),
        RequestCase("api-stop-object", "stop {'a': 1}", "api", chat, _chat(stop={"a": 1})),
        RequestCase(
            "api-stop-1000", "1,000 stop strings", "api", chat, _chat(stop=[f"s{i}" for i in range(1000)])
        ),
        RequestCase(
            "api-role-hacker",
            "role 'hacker'",
            "api",
            chat,
            _chat(messages=[{"role": "hacker", "content": "hi"}]),
        ),
        RequestCase(
            "api-image-content",
            "image content",
            "api",
            chat,
            _chat(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}],
                    }
                ]
            ),
        ),
        RequestCase("api-messages-empty", "messages []", "api", chat, _chat(messages=[])),
        RequestCase("api-messages-string", "messages 'hello'", "api", chat, _chat(messages="hello")),
        RequestCase("api-messages-missing", "no messages", "api", chat, _chat(messages=_DELETE)),
        RequestCase("api-model-missing", "no model", "api", chat, _chat(model=_DELETE)),
        RequestCase("api-model-unknown", "model 'no-such-model'", "api", chat, _chat(model="no-such-model")),
        RequestCase("api-model-number", "model 123", "api", chat, _chat(model=123)),
        RequestCase("api-invalid-json", "body '{\"model\":'", "api", chat, b'{"model":'),
        RequestCase("api-body-array", "body [1, 2]", "api", chat, [1, 2]),
        RequestCase("api-body-empty", "empty body", "api", chat, b""),
        RequestCase(
            "api-huge-body",
            "5 MB message",
            "api",
            chat,
            _chat(messages=[{"role": "user", "content": "x" * 5_000_000}]),
        ),
        RequestCase("api-n-1000", "n 1000", "api", chat, _chat(n=1000)),
        RequestCase("api-n-0", "n 0", "api", chat, _chat(n=0)),
        RequestCase("api-max-tokens-negative", "max_tokens -5", "api", chat, _chat(max_tokens=-5)),
        RequestCase("api-max-tokens-string", "max_tokens 'many'", "api", chat, _chat(max_tokens="many")),
        RequestCase("api-max-tokens-huge", "max_tokens 10**12", "api", chat, _chat(max_tokens=10**12)),
        RequestCase(
            "api-content-null",
            "content null",
            "api",
            chat,
            _chat(messages=[{"role": "user", "content": None}]),
        ),
        RequestCase(
            "api-content-number",
            "content 123",
            "api",
            chat,
            _chat(messages=[{"role": "user", "content": 123}]),
        ),
        RequestCase(
            "api-10k-messages",
            "10,000 messages",
            "api",
            chat,
            _chat(messages=[{"role": "user", "content": "hi"}] * 10_000),
        ),
        RequestCase("api-stream-list", "stream [1]", "api", chat, _chat(stream=[1])),
        RequestCase(
            "api-presence-penalty-string", "presence_penalty 'x'", "api", chat, _chat(presence_penalty="x")
        ),
        RequestCase(
            "api-lone-surrogate",
            "content with a lone surrogate",
            "api",
            chat,
            b'{"model": "demo-tgi", "messages": [{"role": "user", "content": "\\ud800"}], "max_tokens": 8}',
        ),
        RequestCase(
            "api-stream-temperature-string",
            "stream true, temperature 'hot'",
            "api",
            chat,
            _chat(stream=True, temperature="hot"),
        ),
        RequestCase(
            "api-stream-top-k-string", "stream true, top_k 'x'", "api", chat, _chat(stream=True, top_k="x")
        ),
        RequestCase(
            "api-user-1mb",
            "user of 1 MB",
            "api",
            chat,
            _chat(user="u" * 1_000_000),
            accepted="accepted and ignored, as OpenAI's API does; bounded by the 4 MB body limit",
        ),
        RequestCase(
            "api-text-plain", "Content-Type text/plain", "api", chat, _chat(), content_type="text/plain"
        ),
        RequestCase("api-deep-json", "JSON nested 100,000 levels", "api", chat, b"[" * 100_000),
        RequestCase(
            "api-completions-prompt-object",
            "/v1/completions prompt {}",
            "api",
            "/v1/completions",
            {"model": "demo-tgi", "prompt": {"a": 1}},
        ),
        RequestCase(
            "api-completions-temperature-string",
            "/v1/completions temperature 'hot'",
            "api",
            "/v1/completions",
            {"model": "demo-tgi", "prompt": "hi", "temperature": "hot", "max_tokens": 8},
        ),
        RequestCase(
            "api-fastchat-route-temperature-string",
            "/api/v1/chat/completions temperature 'hot'",
            "api",
            "/api/v1/chat/completions",
            _chat(temperature="hot"),
        ),
        # --- the worker's own routes (what the API and the web UI call) -------------------------------------
        RequestCase("worker-temperature-string", "temperature 'hot'", "worker", gen, _gen(temperature="hot")),
        RequestCase("worker-top-p-string", "top_p 'x'", "worker", gen, _gen(top_p="x")),
        RequestCase("worker-top-k-string", "top_k 'x'", "worker", gen, _gen(top_k="x")),
        RequestCase("worker-stop-number", "stop 5", "worker", gen, _gen(stop=5)),
        RequestCase(
            "worker-max-new-tokens-string", "max_new_tokens 'x'", "worker", gen, _gen(max_new_tokens="x")
        ),
        RequestCase("worker-model-missing", "no model", "worker", gen, _gen(model=_DELETE)),
        RequestCase("worker-prompt-missing", "no prompt", "worker", gen, _gen(prompt=_DELETE)),
        RequestCase("worker-prompt-number", "prompt 123", "worker", gen, _gen(prompt=123)),
        RequestCase("worker-invalid-json", "body '{'", "worker", gen, b"{"),
        RequestCase("worker-body-array", "body [1]", "worker", gen, [1]),
        RequestCase(
            "worker-generate-temperature-string",
            "/worker_generate temperature 'hot'",
            "worker",
            "/worker_generate",
            _gen(temperature="hot"),
        ),
        RequestCase(
            "worker-count-token-object", "/count_token prompt {}", "worker", "/count_token", {"prompt": {}}
        ),
        RequestCase(
            "worker-model-details-list",
            "/model_details model [1]",
            "worker",
            "/model_details",
            {"model": [1]},
        ),
        RequestCase(
            "worker-conv-template-body-array",
            "/worker_get_conv_template body [1]",
            "worker",
            "/worker_get_conv_template",
            [1],
        ),
    ]
    return r
