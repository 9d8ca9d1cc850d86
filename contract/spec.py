"""Model specs: one registry item -> one validated, normalized, immutable spec (pure, no I/O).

The item schema is the seed's, fixed by existing users (shared/DESIGN.md "Registry"):
`model_name`, `endpoint_name`, `endpoint_req_config` (a JSON string or a map), optional `model_family`
(the seed's, accepted and kept), and optional extras that go beyond the seed: `conv_template`,
`context_length`, `description`.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from contract.dynamo import untype_item
from contract.errors import Problem, SpecError, describe_model
from contract.jsonpaths import JsonPath, MultiReader, PathSyntaxError, write_problem

ALL_MODELS_KEY = "all-models"
MAX_MODEL_NAME = 64
# The SSM Advanced tier holds 8 KB; a model parameter carries the spec plus its hash in an envelope.
MAX_SPEC_PARAMETER_BYTES = 8192
ENDPOINT_NAME_RE = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")

CANONICAL_REQUEST_FIELDS = (
    "prompt",
    "stream",
    "max_new_tokens",
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "stop",
    "do_sample",
    "seed",
)
CANONICAL_RESPONSE_FIELDS = (
    "text",
    "finish_reason",
    "generated_text",
    "generated_tokens",
    "logprobs",
    "id",
    "special",
    "seed",
)
_CFG = "endpoint_req_config"


def canonical_json(value: Any) -> str:
    """The one serialization used for hashing and size checks: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def content_hash(value: Any) -> str:
    """16 hex digits of SHA-256 over the canonical JSON: enough to detect any change between versions."""
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()[:16]


def model_name_problem(name: object) -> str | None:
    """Why `name` cannot be a model name (names are display labels), or None."""
    if not isinstance(name, str):
        return f"must be a string, not {type(name).__name__}"
    if not name:
        return "must not be empty"
    if name != name.strip():
        return "must not start or end with spaces"
    if "," in name:
        return "must not contain a comma (all-models.model_names is comma-separated)"
    if len(name) > MAX_MODEL_NAME:
        return f"is {len(name)} characters long; the limit is {MAX_MODEL_NAME}"
    if not name.isprintable():
        return "must hold printable characters only"
    if name == ALL_MODELS_KEY:
        return f"{ALL_MODELS_KEY!r} is reserved for the list of active models"
    return None


@dataclass(frozen=True)
class ModelSpec:
    """A validated model: everything a worker needs to call and decode one SageMaker endpoint.

    Immutable and shared by every request to this model; per-request state lives elsewhere.
    """

    name: str
    endpoint_name: str
    request_defaults: Mapping[str, Any]
    request_mapping: Mapping[str, JsonPath]
    response_mapping: Mapping[str, JsonPath]
    regex_sub: re.Pattern[str] | None
    document: Mapping[str, Any] = field(repr=False)
    hash: str = ""
    model_family: str | None = None
    conv_template: str | None = None
    context_length: int | None = None
    description: str | None = None

    @cached_property
    def response_reader(self) -> MultiReader:
        """All response paths compiled into one reader (built once per spec, shared by its streams)."""
        return MultiReader(dict(self.response_mapping))

    def fresh_defaults(self) -> dict[str, Any]:
        """A private deep copy of the request defaults, safe to fill in for one request."""
        return copy.deepcopy(dict(self.request_defaults))


class _Collector:
    """Gathers every problem of one item, so operators fix all of them in one go."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.problems: list[Problem] = []

    def add(self, path: str, reason: str) -> None:
        self.problems.append(Problem(self.model, path, reason))

    def object_at(self, parent: Mapping[str, Any], key: str, path: str) -> dict[str, Any] | None:
        value = parent.get(key)
        if value is None:
            self.add(path, "is missing")
            return None
        if not isinstance(value, dict):
            self.add(path, f"must be an object, not {_type_name(value)}")
            return None
        return value


def _type_name(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), type(value).__name__
    )


def _load_config(raw: Any, c: _Collector) -> dict[str, Any] | None:
    if raw is None:
        c.add(_CFG, "is missing")
        return None
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, strict=False)  # the seed's configs hold raw newlines in strings
        except json.JSONDecodeError as exc:
            c.add(_CFG, f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
            return None
    if not isinstance(raw, dict):
        c.add(_CFG, f"must be a JSON object, not {_type_name(raw)}")
        return None
    return raw


def _compile_mapping(
    mapping: dict[str, Any], path: str, c: _Collector, write_into: dict[str, Any] | None
) -> dict[str, JsonPath]:
    compiled: dict[str, JsonPath] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for key, source in mapping.items():
        where = f"{path}.{key}"
        if not key:
            c.add(where, "field names must not be empty")
            continue
        if not isinstance(source, str):
            c.add(where, f"must be a JSONPath string, not {_type_name(source)}")
            continue
        try:
            jp = JsonPath.compile(source)
        except PathSyntaxError as exc:
            c.add(where, str(exc))
            continue
        if write_into is not None:
            problem = write_problem(jp, write_into)
            if problem:
                c.add(where, f"{source!r} cannot be written into request.defaults: {problem}")
                continue
            assert jp.steps is not None
            if jp.steps in seen:
                c.add(
                    where, f"{source!r} is also mapped by {seen[jp.steps]!r}; each field needs its own path"
                )
                continue
            seen[jp.steps] = key
        compiled[key] = jp
    return compiled


def _optional_attributes(item: dict[str, Any], c: _Collector) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key in ("model_family", "conv_template", "description"):
        value = item.get(key)
        if value is None:
            continue
        limit = 256 if key == "description" else 64
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            c.add(key, f"must be a non-empty string of at most {limit} characters")
        else:
            extras[key] = value
    ctx = item.get("context_length")
    if ctx is not None:
        if isinstance(ctx, bool) or not isinstance(ctx, int) or ctx <= 0:
            c.add("context_length", f"must be a positive whole number of tokens, not {ctx!r}")
        else:
            extras["context_length"] = ctx
    return extras


@dataclass
class _ParsedConfig:
    defaults: dict[str, Any] = field(default_factory=dict)
    request_mapping: dict[str, JsonPath] = field(default_factory=dict)
    response_mapping: dict[str, JsonPath] = field(default_factory=dict)
    regex_sub: re.Pattern[str] | None = None

    def document(self) -> dict[str, Any]:
        """The normalized `endpoint_req_config` (what is hashed and published)."""
        return {
            "request": {
                "defaults": self.defaults,
                "mapping": {k: v.source for k, v in self.request_mapping.items()},
            },
            "response": {
                "regex_sub": self.regex_sub.pattern if self.regex_sub else None,
                "mapping": {k: v.source for k, v in self.response_mapping.items()},
            },
        }


def _parse_request(config: dict[str, Any], c: _Collector, out: _ParsedConfig) -> None:
    request = c.object_at(config, "request", f"{_CFG}.request")
    if request is None:
        return
    defaults = c.object_at(request, "defaults", f"{_CFG}.request.defaults")
    mapping = c.object_at(request, "mapping", f"{_CFG}.request.mapping")
    if defaults is not None:
        out.defaults = defaults
    if mapping is not None:
        if "prompt" not in mapping and "messages" not in mapping:  # API issue: `messages` may replace it
            c.add(
                f"{_CFG}.request.mapping.prompt",
                "is missing: every model needs the prompt's path (or `messages`, for chat-style bodies)",
            )
        out.request_mapping = _compile_mapping(mapping, f"{_CFG}.request.mapping", c, defaults)


def _parse_response(config: dict[str, Any], c: _Collector, out: _ParsedConfig) -> None:
    response = c.object_at(config, "response", f"{_CFG}.response")
    if response is None:
        return
    pattern = response.get("regex_sub")
    if not isinstance(pattern, str | None):
        c.add(f"{_CFG}.response.regex_sub", f"must be a string, not {_type_name(pattern)}")
    elif pattern:
        try:
            out.regex_sub = re.compile(pattern)
        except re.error as exc:
            c.add(f"{_CFG}.response.regex_sub", f"{pattern!r} is not a valid regular expression ({exc})")
    mapping = c.object_at(response, "mapping", f"{_CFG}.response.mapping")
    if mapping is not None:
        if "text" not in mapping:
            c.add(f"{_CFG}.response.mapping.text", "is missing: every model needs the token text's path")
        out.response_mapping = _compile_mapping(mapping, f"{_CFG}.response.mapping", c, None)


def _parse_config(config: dict[str, Any], c: _Collector) -> _ParsedConfig:
    out = _ParsedConfig()
    _parse_request(config, c, out)
    _parse_response(config, c, out)
    return out


def parse_model_item(item: Mapping[str, Any]) -> ModelSpec:
    """Validate one registry item (plain, JSON-string config, or DynamoDB typed form) into a ModelSpec.

    Raises SpecError listing every problem, each naming the model, the dotted field path and why.
    """
    if not isinstance(item, Mapping):
        raise SpecError([Problem("<item>", "", f"a model item must be an object, not {_type_name(item)}")])
    plain_item = untype_item(dict(item))
    name = plain_item.get("model_name")
    c = _Collector(describe_model(name))
    name_problem = model_name_problem(name)
    if name_problem:
        c.add("model_name", name_problem)

    endpoint = plain_item.get("endpoint_name")
    if endpoint is None:
        c.add("endpoint_name", "is missing")
    elif not isinstance(endpoint, str) or not ENDPOINT_NAME_RE.match(endpoint):
        c.add(
            "endpoint_name",
            f"{endpoint!r} is not a SageMaker endpoint name "
            "(1-63 letters, digits or hyphens, starting and ending with a letter or digit)",
        )

    extras = _optional_attributes(plain_item, c)
    config = _load_config(plain_item.get(_CFG), c)
    parsed = _parse_config(config, c) if config is not None else _ParsedConfig()

    if c.problems:
        raise SpecError(c.problems)
    assert isinstance(name, str)
    assert isinstance(endpoint, str)
    document: dict[str, Any] = {
        "model_name": name,
        "endpoint_name": endpoint,
        _CFG: parsed.document(),
        **extras,
    }
    size = len(canonical_json(spec_parameter_value(document, content_hash(document))).encode())
    if size > MAX_SPEC_PARAMETER_BYTES:
        raise SpecError(
            [
                Problem(
                    name,
                    _CFG,
                    f"the spec is {size} bytes as an SSM parameter; "
                    f"the SSM Advanced tier holds at most {MAX_SPEC_PARAMETER_BYTES}",
                )
            ]
        )
    return ModelSpec(
        name=name,
        endpoint_name=endpoint,
        request_defaults=parsed.defaults,
        request_mapping=parsed.request_mapping,
        response_mapping=parsed.response_mapping,
        regex_sub=parsed.regex_sub,
        document=document,
        hash=content_hash(document),
        **extras,
    )


SPEC_SCHEMA = 1


def spec_parameter_value(document: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """The JSON envelope stored in a model's SSM parameter."""
    return {"schema": SPEC_SCHEMA, "hash": digest, "spec": document}


def parse_spec_parameter(text: str, model: str = "<parameter>") -> ModelSpec:
    """Parse and verify a model parameter written by the sync Lambda (the hash must match the spec)."""
    try:
        envelope = json.loads(text)
        document, digest = envelope["spec"], envelope["hash"]
    except (ValueError, KeyError, TypeError) as exc:
        raise SpecError(
            [Problem(model, "", f"the SSM parameter is not a model spec envelope ({exc})")]
        ) from None
    spec = parse_model_item(document)
    if spec.hash != digest:
        raise SpecError(
            [Problem(model, "hash", f"the parameter says {digest} but its spec hashes to {spec.hash}")]
        )
    return spec
