"""Model specs: one registry item -> one validated, normalized, immutable spec (pure, no I/O).

The item schema is the seed's, fixed by existing users (docs/design.md "Registry"):
`model_name`, `endpoint_name`, `endpoint_req_config` (a JSON string or a map), optional `model_family`
(the seed's, accepted and kept), and optional extras that go beyond the seed: `conv_template`,
`context_length`, `description`, `probe`, `variants` (contract/variants.py). `rollout` (a staged rollout's
state, rollout/state.py) is control-plane state: accepted, ignored here and not part of the spec or its hash.

The validator is total: any value gives a ModelSpec or a SpecError naming model, field and why, never
another exception, and every size an operator controls is bounded (the MAX_* constants here, in
contract/jsonpaths.py and contract/line_regex.py; README "Limits").
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

from contract.conv_templates import CONV_TEMPLATES, FASTCHAT_VERSION
from contract.dynamo import is_typed_value, untype_item_checked
from contract.errors import Problem, SpecError, describe_model
from contract.json_shape import depth_exceeds, join_path, key_label, shape_problem, short_repr
from contract.jsonpaths import JsonPath, MultiReader, PathSyntaxError, write_problem
from contract.line_regex import LineRegex, RegexError
from contract.variants import VariantEntry, check_entries, load_list, primary_weight

ALL_MODELS_KEY = "all-models"
MAX_MODEL_NAME = 64
# The SSM Advanced tier holds 8 KB; a model parameter carries the spec plus its hash in an envelope.
MAX_SPEC_PARAMETER_BYTES = 8192
# SageMaker: 1-63 characters, letters, digits and hyphens, starting and ending with a letter or digit.
MAX_ENDPOINT_NAME = 63
ENDPOINT_NAME_RE = re.compile(r"[a-zA-Z0-9](?:-*[a-zA-Z0-9])*")
MAX_CONTEXT_LENGTH = 10_000_000
MAX_LABEL = 64  # model_family, conv_template
MAX_DESCRIPTION = 256
MAX_MAPPED_FIELDS = 32  # per mapping (request, response)
MAX_FIELD_NAME = 64
MAX_DEFAULTS_BYTES = 6144  # as canonical JSON; the whole spec must fit MAX_SPEC_PARAMETER_BYTES anyway
MAX_DEFAULTS_DEPTH = 16
# The whole item, before anything recursive reads it (typed wrappers like {"M": ...} count as levels).
MAX_ITEM_DEPTH = 64
MAX_ITEM_VALUES = 10_000
MAX_ITEM_CHARS = 400_000  # DynamoDB's item limit is 400 KB
MAX_CONFIG_DEPTH = 3 + MAX_DEFAULTS_DEPTH  # endpoint_req_config.request.defaults...
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
    regex_sub: LineRegex | None  # run by RE2, linear in the line (contract/line_regex.py)
    document: Mapping[str, Any] = field(repr=False)
    hash: str = ""
    model_family: str | None = None
    conv_template: str | None = None
    context_length: int | None = None
    description: str | None = None
    probe: bool = False  # [warm] stream a one-token probe request before this spec takes traffic

    arena_weight: float = 1.0  # arena (issue 16): relative chance to be drawn into battles; 0 = never
    # Issue 17: the other endpoints serving this name (not the primary; see variants()).
    other_variants: tuple[Variant, ...] = field(default=(), repr=False)

    @cached_property
    def config_hash(self) -> str:
        """The hash of what answers through this spec's own endpoint: the spec without its other variants
        and their weights (== `hash` for a model without variants, and for a variant's spec). A vote names
        the answering variant's, so a rollout's weight steps do not split a model's leaderboard row."""
        if "variants" not in self.document:
            return self.hash
        return content_hash({k: v for k, v in self.document.items() if k != "variants"})

    @cached_property
    def response_reader(self) -> MultiReader:
        """All response paths compiled into one reader (built once per spec, shared by its streams)."""
        return MultiReader(dict(self.response_mapping))

    def fresh_defaults(self) -> dict[str, Any]:
        """A private deep copy of the request defaults, safe to fill in for one request."""
        return copy.deepcopy(dict(self.request_defaults))

    @cached_property
    def _variants(self) -> tuple[Variant, ...]:
        weight = primary_weight([v.weight for v in self.other_variants])
        return (Variant(self.endpoint_name, weight, self, True), *self.other_variants)

    def variants(self) -> tuple[Variant, ...]:
        """Every endpoint serving this name, primary first; exactly one (weight 100) without `variants`."""
        return self._variants


@dataclass(frozen=True)
class Variant:
    """One endpoint serving a model: `spec` is a full spec for this endpoint (same model name, this
    endpoint_name, its config override or the item's own); the primary's weight is computed. (Here, not
    in contract/variants.py, which holds the structural checks: a Variant holds a ModelSpec.)"""

    endpoint_name: str
    weight: float  # 0..100
    spec: ModelSpec
    primary: bool


class _Collector:
    """Gathers every problem of one item, so operators fix all of them in one go."""

    def __init__(self, model: str, prefix: str = "", problems: list[Problem] | None = None) -> None:
        self.model = model
        self.prefix = prefix  # e.g. "variants[1]." while a variant's config override is parsed
        self.problems: list[Problem] = [] if problems is None else problems
        self.broken: set[str] = set()  # attributes already refused as a whole (e.g. a malformed typed value)

    def add(self, path: str, reason: str) -> None:
        if path.partition(".")[0] not in self.broken:
            self.problems.append(Problem(self.model, self.prefix + path, reason))

    def nested(self, prefix: str) -> _Collector:
        """A collector whose problems land here, under `prefix` (a variant's own config)."""
        return _Collector(self.model, self.prefix + prefix, self.problems)

    def refuse_attribute(self, attribute: str, reason: str) -> None:
        """Refuse a whole attribute; later problems inside it would only repeat this one."""
        self.add(attribute, reason)
        self.broken.add(attribute)

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
        except RecursionError:
            c.add(_CFG, f"nests deeper than {MAX_CONFIG_DEPTH} levels of objects and arrays")
            return None
        except ValueError as exc:  # e.g. a number past Python's 4,300-digit conversion limit
            c.add(_CFG, f"cannot be read as JSON ({short_repr(str(exc), 120)})")
            return None
    if not isinstance(raw, dict):
        c.add(_CFG, f"must be a JSON object, not {_type_name(raw)}")
        return None
    shape = shape_problem(
        raw,
        path=_CFG,
        max_depth=MAX_CONFIG_DEPTH,
        max_nodes=MAX_ITEM_VALUES,
        max_chars=MAX_ITEM_CHARS,
        strict=True,
    )
    if shape is not None:
        c.add(*shape)
        return None
    return raw


def _field_name_problem(key: str) -> str | None:
    if not key:
        return "field names must not be empty"
    if len(key) > MAX_FIELD_NAME:
        return f"field names are at most {MAX_FIELD_NAME} characters; this one has {len(key)}"
    if not key.isprintable():
        return "field names must hold printable characters only"
    return None


def _compile_mapping(
    mapping: dict[str, Any], path: str, c: _Collector, write_into: dict[str, Any] | None
) -> dict[str, JsonPath]:
    if len(mapping) > MAX_MAPPED_FIELDS:
        c.add(path, f"maps {len(mapping)} fields; the limit is {MAX_MAPPED_FIELDS}")
        return {}
    compiled: dict[str, JsonPath] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for key, source in mapping.items():
        where = join_path(path, key)
        name_problem = _field_name_problem(key)
        if name_problem:
            c.add(where, name_problem)
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


def _text_attribute_problem(key: str, value: object) -> str | None:
    limit = MAX_DESCRIPTION if key == "description" else MAX_LABEL
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        return f"must be a non-empty string of at most {limit} characters"
    if not value.isprintable():
        return "must hold printable characters only (no control or direction-override characters)"
    if key == "conv_template" and value not in CONV_TEMPLATES:
        return (
            f"{value!r} is not a conversation template of FastChat {FASTCHAT_VERSION} "
            "(e.g. llama-2, mistral, raw, vicuna_v1.1: the keys of fastchat.conversation.conv_templates)"
        )
    return None


def _optional_attributes(item: dict[str, Any], c: _Collector) -> dict[str, Any]:
    extras: dict[str, Any] = {}
    for key in ("model_family", "conv_template", "description"):
        value = item.get(key)
        if value is None:
            continue
        problem = _text_attribute_problem(key, value)
        if problem:
            c.add(key, problem)
        else:
            extras[key] = value
    ctx = item.get("context_length")
    if ctx is not None:
        if isinstance(ctx, bool) or not isinstance(ctx, int) or not 0 < ctx <= MAX_CONTEXT_LENGTH:
            c.add(
                "context_length",
                f"must be a positive whole number of tokens, at most {MAX_CONTEXT_LENGTH:,}, "
                f"not {short_repr(ctx)}",
            )
        else:
            extras["context_length"] = ctx
    # [warm] `probe` (issue 17 item 1): an optional boolean; only `true` is kept, so specs without it
    # (or with `false`) hash exactly as before.
    probe = item.get("probe")
    if probe is not None and not isinstance(probe, bool):
        c.add("probe", f"must be true or false, not {short_repr(probe)}")
    elif probe:
        extras["probe"] = True

    # arena (issue 16): optional `arena_weight`, a number from 0 (never in battles) to 100; default 1.
    weight = item.get("arena_weight")
    if weight is not None:
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight <= 100:
            c.add(
                "arena_weight", f"must be a number from 0 (never in battles) to 100, not {short_repr(weight)}"
            )
        else:
            extras["arena_weight"] = float(weight)
    return extras


@dataclass
class _ParsedConfig:
    defaults: dict[str, Any] = field(default_factory=dict)
    request_mapping: dict[str, JsonPath] = field(default_factory=dict)
    response_mapping: dict[str, JsonPath] = field(default_factory=dict)
    regex_sub: LineRegex | None = None

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


def _defaults_problem(defaults: dict[str, Any]) -> str | None:
    if depth_exceeds(defaults, MAX_DEFAULTS_DEPTH):
        return f"nests deeper than {MAX_DEFAULTS_DEPTH} levels of objects and arrays"
    size = len(canonical_json(defaults).encode())
    if size > MAX_DEFAULTS_BYTES:
        return f"is {size} bytes as JSON; the limit is {MAX_DEFAULTS_BYTES}"
    return None


def _parse_request(config: dict[str, Any], c: _Collector, out: _ParsedConfig) -> None:
    request = c.object_at(config, "request", f"{_CFG}.request")
    if request is None:
        return
    defaults = c.object_at(request, "defaults", f"{_CFG}.request.defaults")
    mapping = c.object_at(request, "mapping", f"{_CFG}.request.mapping")
    if defaults is not None:
        problem = _defaults_problem(defaults)
        if problem:
            c.add(f"{_CFG}.request.defaults", problem)
        else:
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
            out.regex_sub = LineRegex(pattern)
        except RegexError as exc:
            c.add(f"{_CFG}.response.regex_sub", str(exc))
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


def _raw_name(item: Mapping[str, Any]) -> object:
    """The model name for labelling problems found before the item is untyped."""
    name = item.get("model_name")
    return name.get("S") if isinstance(name, dict) and is_typed_value(name) else name


def parse_model_item(item: Mapping[str, Any]) -> ModelSpec:
    """Validate one registry item (plain, JSON-string config, or DynamoDB typed form) into a ModelSpec.

    Raises SpecError listing every problem, each naming the model, the dotted field path and why; any
    input gets a ModelSpec or a SpecError, never another exception.
    """
    if not isinstance(item, Mapping):
        raise SpecError([Problem("<item>", "", f"a model item must be an object, not {_type_name(item)}")])
    shape = shape_problem(
        item,
        path="",
        max_depth=MAX_ITEM_DEPTH,
        max_nodes=MAX_ITEM_VALUES,
        max_chars=MAX_ITEM_CHARS,
        strict=False,
    )
    if shape is not None:
        where, why = shape
        raise SpecError([Problem(describe_model(_raw_name(item)), where or "<item>", why)])
    plain_item, typed_errors = untype_item_checked(dict(item))
    name = plain_item.get("model_name")
    c = _Collector(describe_model(name))
    for attribute, why in typed_errors.items():
        c.refuse_attribute(key_label(attribute), why)
    name_problem = model_name_problem(name)
    if name_problem:
        c.add("model_name", name_problem)

    endpoint = plain_item.get("endpoint_name")
    if endpoint is None:
        c.add("endpoint_name", "is missing")
    else:
        problem = endpoint_name_problem(endpoint)
        if problem:
            c.add("endpoint_name", problem)

    extras = _optional_attributes(plain_item, c)
    config = _load_config(plain_item.get(_CFG), c)
    parsed = _parse_config(config, c) if config is not None else _ParsedConfig()
    variants = _parse_variants(plain_item, c)

    if c.problems:
        raise SpecError(c.problems)
    assert isinstance(name, str)
    assert isinstance(endpoint, str)
    base: dict[str, Any] = {"model_name": name, "endpoint_name": endpoint, _CFG: parsed.document(), **extras}
    others = tuple(_variant(entry, own or parsed, base, extras) for entry, own in variants)
    document = dict(base)
    if others:  # absent when there are none: such specs hash exactly as before issue 17
        document["variants"] = [_variant_document(entry, own) for entry, own in variants]
    size = len(canonical_json(spec_parameter_value(document, content_hash(document))).encode())
    if size > MAX_SPEC_PARAMETER_BYTES:
        raise SpecError(
            [
                Problem(
                    name,
                    "variants" if others else _CFG,
                    f"the spec is {size} bytes as an SSM parameter; "
                    f"the SSM Advanced tier holds at most {MAX_SPEC_PARAMETER_BYTES}",
                )
            ]
        )
    return _spec(document, parsed, extras, others)


def _spec(
    document: dict[str, Any], parsed: _ParsedConfig, extras: dict[str, Any], others: tuple[Variant, ...]
) -> ModelSpec:
    return ModelSpec(
        name=document["model_name"],
        endpoint_name=document["endpoint_name"],
        request_defaults=parsed.defaults,
        request_mapping=parsed.request_mapping,
        response_mapping=parsed.response_mapping,
        regex_sub=parsed.regex_sub,
        document=document,
        hash=content_hash(document),
        other_variants=others,
        **extras,
    )


def endpoint_name_problem(endpoint: object) -> str | None:
    """Why `endpoint` cannot be a SageMaker endpoint name, or None."""
    if (
        isinstance(endpoint, str)
        and len(endpoint) <= MAX_ENDPOINT_NAME
        and ENDPOINT_NAME_RE.fullmatch(endpoint)
    ):
        return None
    return (
        f"{short_repr(endpoint, 80)} is not a SageMaker endpoint name "
        f"(1-{MAX_ENDPOINT_NAME} letters, digits or hyphens, starting and ending with a letter or digit)"
    )


def _parse_variants(item: dict[str, Any], c: _Collector) -> list[tuple[VariantEntry, _ParsedConfig | None]]:
    """Each valid entry of `variants` with its parsed config override (None: the item's own)."""
    raw = item.get("variants")
    if raw is None or "variants" in c.broken:
        return []
    entries = load_list(raw, c.add)
    if entries is None:
        return []
    out: list[tuple[VariantEntry, _ParsedConfig | None]] = []
    for entry in check_entries(entries, item.get("endpoint_name"), endpoint_name_problem, c.add):
        own: _ParsedConfig | None = None
        if entry.config is not None:
            sub = c.nested(f"variants[{entry.index}].")
            config = _load_config(entry.config, sub)
            own = _parse_config(config, sub) if config is not None else None
        out.append((entry, own))
    return out


def _variant_document(entry: VariantEntry, own: _ParsedConfig | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"endpoint_name": entry.endpoint_name, "weight": entry.weight}
    if own is not None:
        doc[_CFG] = own.document()
    return doc


def _variant(
    entry: VariantEntry, parsed: _ParsedConfig, base: dict[str, Any], extras: dict[str, Any]
) -> Variant:
    """A variant as a full spec of its own: the model's name and attributes, its endpoint, its config
    (the override or the item's own)."""
    document = {**base, "endpoint_name": entry.endpoint_name, _CFG: parsed.document()}
    return Variant(entry.endpoint_name, float(entry.weight), _spec(document, parsed, extras, ()), False)


SPEC_SCHEMA = 1


def spec_parameter_value(document: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """The JSON envelope stored in a model's SSM parameter."""
    return {"schema": SPEC_SCHEMA, "hash": digest, "spec": document}


def parse_spec_parameter(text: str, model: str = "<parameter>") -> ModelSpec:
    """Parse and verify a model parameter written by the sync Lambda (the hash must match the spec)."""
    try:
        envelope = json.loads(text)
        document, digest = envelope["spec"], envelope["hash"]
    except (ValueError, KeyError, TypeError, RecursionError) as exc:
        why = f"the SSM parameter is not a model spec envelope ({short_repr(str(exc), 120)})"
        raise SpecError([Problem(model, "", why)]) from None
    spec = parse_model_item(document)
    if spec.hash != digest:
        raise SpecError(
            [Problem(model, "hash", f"the parameter says {digest} but its spec hashes to {spec.hash}")]
        )
    return spec
