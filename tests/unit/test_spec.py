"""Model spec parsing and validation: every accepted form, every refusal names model, field and why."""

from __future__ import annotations

import contextlib
import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.errors import SpecError
from contract.spec import parse_model_item, parse_spec_parameter, spec_parameter_value
from tests.helpers import DELETE, EXAMPLES, example_item, set_path

CFG = "endpoint_req_config"


def typed(item: dict[str, Any]) -> dict[str, Any]:
    """An item as DynamoDB stream images carry it ({"S": ...}, {"M": ...})."""
    ser = TypeSerializer()
    return {k: ser.serialize(_decimals(v)) for k, v in item.items()}


def _decimals(value: Any) -> Any:
    from decimal import Decimal

    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    return value


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_parse_in_every_form(name: str) -> None:
    """A config as a dict, a JSON string, a typed map and a typed string all give the same spec."""
    item = example_item(name)
    as_string = {**item, CFG: json.dumps(item[CFG])}
    forms = [item, as_string, typed(item), typed(as_string)]
    hashes = {parse_model_item(form).hash for form in forms}
    assert len(hashes) == 1


def test_seed_tgi_config_verbatim() -> None:
    """The seed's TGI config (with its model_family attribute) is accepted as it is."""
    spec = parse_model_item(example_item("tgi"))
    assert spec.model_family == "sagemaker"
    assert spec.request_mapping["prompt"].steps == ("inputs",)
    assert spec.regex_sub is not None
    assert spec.regex_sub.pattern == "^data:"


def test_json_string_with_raw_newlines_is_accepted() -> None:
    """The seed parsed configs with strict=False: raw control characters inside strings still load."""
    item = example_item("tgi")
    text = json.dumps(item[CFG]).replace('"My name is Olivier and I"', '"line one\nline two"')
    assert parse_model_item({**item, CFG: text}).request_defaults["inputs"] == "line one\nline two"


def test_spec_parameter_round_trip() -> None:
    """A published envelope parses back to the same spec; a tampered one is refused by its hash."""
    spec = parse_model_item(example_item("lmi-jsonlines"))
    text = json.dumps(spec_parameter_value(spec.document, spec.hash))
    assert parse_spec_parameter(text).hash == spec.hash
    tampered = json.loads(text)
    tampered["spec"]["endpoint_name"] = "other"
    with pytest.raises(SpecError, match="hash"):
        parse_spec_parameter(json.dumps(tampered))


def test_optional_attributes_are_kept() -> None:
    """conv_template, context_length and description go beyond the seed and are carried in the spec."""
    item = {**example_item("tgi"), "conv_template": "llama-2", "context_length": 4096}
    spec = parse_model_item(item)
    assert (spec.conv_template, spec.context_length) == ("llama-2", 4096)
    assert spec.document["conv_template"] == "llama-2"


def test_display_names_are_accepted() -> None:
    """Model names are labels: spaces, parentheses and non-ASCII are fine."""
    for name in ("Llama 2 (70B)", "Mistral·7B ünïcode", "x" * 64):
        assert parse_model_item({**example_item("tgi"), "model_name": name}).name == name


def _with_config(change: Any) -> dict[str, Any]:
    item = example_item("tgi")
    change(item[CFG])
    return item


def _set(path: str, value: Any) -> Any:
    def change(cfg: dict[str, Any]) -> None:
        set_path(cfg, path.split("."), value)

    return change


_DELETE = DELETE


def _nested(depth: int) -> list[Any]:
    """A list nested `depth` levels deep, built without recursion."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


BIG = "x" * 9000
# 31 response fields of 250-character paths: each bound is met, the spec as a whole is too big for SSM.
LONG_PATHS = {"text": "$.token.text"} | {f"f{i}": "$." + "x" * 248 for i in range(30)}

# (description, item, expected field path, expected words in the reason)
INVALID: list[tuple[str, Any, str, str]] = [
    ("config not JSON", {**example_item("tgi"), CFG: "{not json"}, CFG, "not valid JSON"),
    ("config JSON but not an object", {**example_item("tgi"), CFG: "[1, 2]"}, CFG, "must be a JSON object"),
    ("config missing", {k: v for k, v in example_item("tgi").items() if k != CFG}, CFG, "is missing"),
    ("request missing", _with_config(_set("request", _DELETE)), f"{CFG}.request", "is missing"),
    ("response missing", _with_config(_set("response", _DELETE)), f"{CFG}.response", "is missing"),
    ("request not an object", _with_config(_set("request", "x")), f"{CFG}.request", "must be an object"),
    (
        "defaults missing",
        _with_config(_set("request.defaults", _DELETE)),
        f"{CFG}.request.defaults",
        "missing",
    ),
    (
        "defaults not an object",
        _with_config(_set("request.defaults", [1])),
        f"{CFG}.request.defaults",
        "object",
    ),
    (
        "request mapping missing",
        _with_config(_set("request.mapping", _DELETE)),
        f"{CFG}.request.mapping",
        "missing",
    ),
    (
        "no prompt mapping",
        _with_config(_set("request.mapping.prompt", _DELETE)),
        f"{CFG}.request.mapping.prompt",
        "is missing",
    ),
    (
        "mapping value not a string",
        _with_config(_set("request.mapping.top_p", 3)),
        f"{CFG}.request.mapping.top_p",
        "must be a JSONPath string",
    ),
    (
        "request jsonpath does not parse",
        _with_config(_set("request.mapping.top_p", "$.[[[")),
        f"{CFG}.request.mapping.top_p",
        "not a JSONPath",
    ),
    (
        "jsonpath through a string",
        _with_config(_set("request.mapping.top_p", "$.inputs.top_p")),
        f"{CFG}.request.mapping.top_p",
        "cannot be written",
    ),
    (
        "jsonpath with a wildcard",
        _with_config(_set("request.mapping.top_p", "$.parameters[*]")),
        f"{CFG}.request.mapping.top_p",
        "only plain paths",
    ),
    (
        "jsonpath index out of range",
        _with_config(_set("request.mapping.top_p", "$.parameters.stop[5]")),
        f"{CFG}.request.mapping.top_p",
        "outside",
    ),
    (
        "index into an object",
        _with_config(_set("request.mapping.top_p", "$.parameters[0]")),
        f"{CFG}.request.mapping.top_p",
        "needs an array",
    ),
    (
        "two fields, one path",
        _with_config(_set("request.mapping.top_k", "$.parameters.top_p")),
        f"{CFG}.request.mapping.top_k",
        "also mapped",
    ),
    (
        "root path",
        _with_config(_set("request.mapping.prompt", "$")),
        f"{CFG}.request.mapping.prompt",
        "plain",
    ),
    (
        "response mapping missing",
        _with_config(_set("response.mapping", _DELETE)),
        f"{CFG}.response.mapping",
        "missing",
    ),
    (
        "no text mapping",
        _with_config(_set("response.mapping.text", _DELETE)),
        f"{CFG}.response.mapping.text",
        "is missing",
    ),
    (
        "response jsonpath does not parse",
        _with_config(_set("response.mapping.text", "$..[")),
        f"{CFG}.response.mapping.text",
        "not a JSONPath",
    ),
    (
        "response mapping value a list",
        _with_config(_set("response.mapping.text", ["$.a"])),
        f"{CFG}.response.mapping.text",
        "must be a JSONPath string",
    ),
    (
        "regex_sub does not compile",
        _with_config(_set("response.regex_sub", "^data:(")),
        f"{CFG}.response.regex_sub",
        "not a valid regular expression",
    ),
    (
        "regex_sub not a string",
        _with_config(_set("response.regex_sub", 5)),
        f"{CFG}.response.regex_sub",
        "string",
    ),
    (
        "endpoint name invalid",
        {**example_item("tgi"), "endpoint_name": "bad_name!"},
        "endpoint_name",
        "not a SageMaker endpoint name",
    ),
    ("endpoint name too long", {**example_item("tgi"), "endpoint_name": "a" * 64}, "endpoint_name", "1-63"),
    (
        "endpoint name missing",
        {k: v for k, v in example_item("tgi").items() if k != "endpoint_name"},
        "endpoint_name",
        "is missing",
    ),
    ("model name empty", {**example_item("tgi"), "model_name": ""}, "model_name", "must not be empty"),
    ("model name with a comma", {**example_item("tgi"), "model_name": "a,b"}, "model_name", "comma"),
    ("model name with spaces around", {**example_item("tgi"), "model_name": " a "}, "model_name", "spaces"),
    ("model name too long", {**example_item("tgi"), "model_name": "m" * 65}, "model_name", "65 characters"),
    ("model name not printable", {**example_item("tgi"), "model_name": "a\tb"}, "model_name", "printable"),
    ("model name reserved", {**example_item("tgi"), "model_name": "all-models"}, "model_name", "reserved"),
    ("model name not a string", {**example_item("tgi"), "model_name": 7}, "model_name", "must be a string"),
    (
        "defaults too large",
        _with_config(_set("request.defaults.big", BIG)),
        f"{CFG}.request.defaults",
        "the limit is 6144",
    ),
    ("spec too large for SSM", _with_config(_set("response.mapping", LONG_PATHS)), CFG, "8192"),
    (
        "context_length not positive",
        {**example_item("tgi"), "context_length": 0},
        "context_length",
        "positive",
    ),
    ("conv_template empty", {**example_item("tgi"), "conv_template": " "}, "conv_template", "non-empty"),
    (
        "conv_template unknown to FastChat",
        {**example_item("tgi"), "conv_template": "no-such-template"},
        "conv_template",
        "not a conversation template of FastChat 0.2.36",
    ),
    (
        "regex_sub with a backreference",
        _with_config(_set("response.regex_sub", "^(data):\\1")),
        f"{CFG}.response.regex_sub",
        "cannot be run by RE2",
    ),
    (
        "regex_sub with a lookahead",
        _with_config(_set("response.regex_sub", "^data:(?=\\{)")),
        f"{CFG}.response.regex_sub",
        "lookahead",
    ),
    (
        "regex_sub too long",
        _with_config(_set("response.regex_sub", "a" * 257)),
        f"{CFG}.response.regex_sub",
        "the limit is 256",
    ),
    (
        "regex_sub program too large",
        _with_config(_set("response.regex_sub", "(a{1000})b{1000}")),
        f"{CFG}.response.regex_sub",
        "RE2 instructions",
    ),
    (
        "response path of 60 steps",
        _with_config(_set("response.mapping.text", "$" + ".a" * 60)),
        f"{CFG}.response.mapping.text",
        "has 60 steps; the limit is 32",
    ),
    (
        "request path of 1,200 steps",
        _with_config(_set("request.mapping.seed", "$" + ".a" * 1200)),
        f"{CFG}.request.mapping.seed",
        "2401 characters long; the limit is 256",
    ),
    (
        "too many mapped fields",
        _with_config(_set("response.mapping", {f"f{i}": "$.a" for i in range(33)} | {"text": "$.t"})),
        f"{CFG}.response.mapping",
        "maps 34 fields; the limit is 32",
    ),
    (
        "field name too long",
        _with_config(_set("response.mapping." + "f" * 65, "$.a")),
        f"{CFG}.response.mapping.'{'f' * 36}...",
        "at most 64 characters",
    ),
    (
        "defaults nested too deeply",
        _with_config(_set("request.defaults.deep", json.loads("[" * 16 + "]" * 16))),
        f"{CFG}.request.defaults",
        "nests deeper than 16 levels",
    ),
    (
        "defaults holding NaN",
        {
            **example_item("tgi"),
            CFG: json.dumps(_with_config(_set("request.defaults.parameters.top_p", "?"))[CFG]).replace(
                '"top_p": "?"', '"top_p": NaN'
            ),
        },
        f"{CFG}.request.defaults.parameters.top_p",
        "NaN and Infinity are not JSON",
    ),
    (
        "defaults holding Infinity",
        _with_config(_set("request.defaults.parameters.top_p", float("inf"))),
        f"{CFG}.request.defaults.parameters.top_p",
        "NaN and Infinity are not JSON",
    ),
    (
        "defaults holding a lone surrogate",
        _with_config(_set("request.defaults.inputs", "a\ud800b")),
        f"{CFG}.request.defaults.inputs",
        "lone surrogate",
    ),
    (
        "defaults with a non-string key",
        _with_config(_set("request.defaults.parameters", {1: "x"})),
        f"{CFG}.request.defaults.parameters",
        "keys must be strings",
    ),
    (
        "defaults holding a number beyond 64 bits",
        _with_config(_set("request.defaults.parameters.seed", 2**70)),
        f"{CFG}.request.defaults.parameters.seed",
        "beyond 64 bits",
    ),
    (
        "config string with a 5,000-digit number",
        {**example_item("tgi"), CFG: '{"request": ' + "9" * 5000 + "}"},
        CFG,
        "cannot be read as JSON",
    ),
    (
        "config string nested 100,000 levels",
        {**example_item("tgi"), CFG: "[" * 100_000 + "]" * 100_000},
        CFG,
        "nests deeper",
    ),
    (
        "item nested 100,000 levels",
        {**example_item("tgi"), "extra": _nested(100_000)},
        "extra" + "[0]" * 63,
        "nests deeper than 64 levels",
    ),
    (
        "endpoint name with a long hyphen run",
        {**example_item("tgi"), "endpoint_name": "a" + "-" * 70 + "b"},
        "endpoint_name",
        "1-63",
    ),
    (
        "context_length too large",
        {**example_item("tgi"), "context_length": 10_000_001},
        "context_length",
        "at most 10,000,000",
    ),
    ("context_length a boolean", {**example_item("tgi"), "context_length": True}, "context_length", "whole"),
    (
        "context_length Decimal Infinity (boto3)",
        {**example_item("tgi"), "context_length": Decimal("Infinity")},
        "context_length",
        "NaN and Infinity",
    ),
    (
        "context_length Decimal sNaN (boto3)",
        {**example_item("tgi"), "context_length": Decimal("sNaN")},
        "context_length",
        "NaN and Infinity",
    ),
    (
        "typed number that is not a number",
        {**typed(example_item("tgi")), "context_length": {"N": "abc"}},
        "context_length",
        "not nan",
    ),
    (
        "typed map that is not a map",
        {**typed(example_item("tgi")), CFG: {"M": "x"}},
        CFG,
        "not a well-formed DynamoDB typed value",
    ),
    (
        "typed list of untyped values",
        {**typed(example_item("tgi")), "description": {"L": [5]}},
        "description",
        "not a well-formed DynamoDB typed value",
    ),
    (
        "model name with a direction override",
        {**example_item("tgi"), "model_name": "abc\u202egpt"},
        "model_name",
        "printable",
    ),
    ("model name with NUL", {**example_item("tgi"), "model_name": "a\x00b"}, "model_name", "printable"),
    (
        "model name with a lone surrogate",
        {**example_item("tgi"), "model_name": "a\udc80"},
        "model_name",
        "lone surrogate",
    ),
    (
        "description with a direction override",
        {**example_item("tgi"), "description": "fine \u202etxt.exe"},
        "description",
        "direction-override",
    ),
    (
        "huge model name",
        {**example_item("tgi"), "model_name": "m" * 500_000},
        "model_name",
        "more than 400000 characters",
    ),
]


@pytest.mark.parametrize(("item", "field", "words"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID])
def test_invalid_items_are_refused_with_model_field_and_reason(item: Any, field: str, words: str) -> None:
    """Each invalid input is refused; the problem names the model, the dotted field and why."""
    with pytest.raises(SpecError) as caught:
        parse_model_item(item)
    problems = caught.value.problems
    matching = [p for p in problems if p.field == field]
    assert matching, f"no problem at {field}: {problems}"
    assert any(words in p.reason for p in matching), matching
    name = item.get("model_name") if isinstance(item, dict) else None
    if isinstance(name, str) and name.strip() == name and name and name.isprintable() and len(name) < 200:
        assert all(p.model == name for p in problems)
    assert str(matching[0]).startswith(f"{matching[0].model}: {field}: ")


def test_at_least_25_distinct_invalid_inputs() -> None:
    """The issue asks for 25 distinct refusals at least."""
    assert len({i[0] for i in INVALID}) >= 25


def test_all_problems_reported_at_once() -> None:
    """Several problems in one item are all reported, not just the first."""
    item = {"model_name": "m", "endpoint_name": "bad name", CFG: {"request": {}, "response": {"mapping": {}}}}
    with pytest.raises(SpecError) as caught:
        parse_model_item(item)
    fields = {p.field for p in caught.value.problems}
    assert {
        "endpoint_name",
        f"{CFG}.request.defaults",
        f"{CFG}.request.mapping",
        f"{CFG}.response.mapping.text",
    } <= (fields)


def test_item_not_an_object() -> None:
    """A list where an item should be is refused clearly."""
    with pytest.raises(SpecError, match="must be an object"):
        parse_model_item([1, 2])  # type: ignore[arg-type]


def test_spec_is_independent_of_the_item() -> None:
    """Changing the item after parsing (or a request's copy) never changes the spec's defaults."""
    item = example_item("tgi")
    spec = parse_model_item(item)
    copy_ = spec.fresh_defaults()
    copy_["parameters"]["stop"].append("x")
    assert spec.request_defaults["parameters"]["stop"] == ["photographer"]


def test_conv_templates_equal_the_installed_fastchat() -> None:
    """contract/ ships FastChat's template names as a constant (the sync image has no FastChat): they
    must be the installed FastChat's exactly."""
    from fastchat.conversation import conv_templates

    from contract.conv_templates import CONV_TEMPLATES

    assert set(conv_templates) == CONV_TEMPLATES


@pytest.mark.parametrize("steps", [60, 1200])
@pytest.mark.parametrize("mapping", ["request", "response"])
def test_long_paths_are_refused_with_model_field_and_why(steps: int, mapping: str) -> None:
    """A 60-step path (used to be published, then failed every chat) and a 1,200-step path (used to
    crash the validator with RecursionError) are refused with one `model: field: why` line."""
    field = "seed" if mapping == "request" else "text"
    item = _with_config(_set(f"{mapping}.mapping.{field}", "$" + ".a" * steps))
    with pytest.raises(SpecError) as caught:
        parse_model_item(item)
    (problem,) = caught.value.problems
    assert str(problem).startswith(f"demo-tgi: {CFG}.{mapping}.mapping.{field}: ")
    assert "the limit is" in problem.reason


def test_paths_at_the_step_limit_work_end_to_end() -> None:
    """The longest allowed paths (MAX_PATH_STEPS) are written into a request and decoded from a line."""
    from contract.decoder import StreamDecoder
    from contract.jsonpaths import MAX_PATH_STEPS
    from contract.request import build_request

    deep = "$" + ".a" * (MAX_PATH_STEPS - 1)
    item = _with_config(_set("request.mapping.seed", deep + ".seed"))
    item[CFG]["response"]["mapping"]["text"] = deep + ".text"
    spec = parse_model_item(item)
    body = build_request(spec, {"prompt": "hi", "seed": 7})
    node = body
    for _ in range(MAX_PATH_STEPS - 1):
        node = node["a"]
    assert node == {"seed": 7}
    line: Any = {"text": "deep"}
    for _ in range(MAX_PATH_STEPS - 1):
        line = {"a": line}
    events = list(StreamDecoder(spec).decode([b"data:" + json.dumps(line).encode() + b"\n"]))
    assert [e.text for e in events] == ["deep"]


# Any JSON-like value, as files, DynamoDB (typed or through boto3) and Python callers can hand over.
_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)
_KEYS = _TEXT | st.sampled_from(["S", "N", "M", "L", "B", "SS", "NS", "BOOL", "NULL", "a"]) | st.integers()
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats()
    | st.decimals()
    | st.binary(max_size=4)
    | _TEXT
    | st.integers(min_value=1, max_value=3000).map(_nested)  # deep nesting, cheaply
)
JSON_LIKE = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=4),
    max_leaves=24,
)
_ATTRIBUTES = [
    "model_name",
    "endpoint_name",
    CFG,
    "model_family",
    "conv_template",
    "context_length",
    "description",
]


def _replace_at(value: Any, path: list[int], new: Any) -> Any:
    """`value` with one nested part (chosen by `path`) replaced by `new`."""
    if not path or not isinstance(value, dict | list) or not value:
        return new
    keys = list(value) if isinstance(value, dict) else list(range(len(value)))
    key = keys[path[0] % len(keys)]
    copy_ = dict(value) if isinstance(value, dict) else list(value)
    copy_[key] = _replace_at(value[key], path[1:], new)  # type: ignore[index]
    return copy_


@st.composite
def _items(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["any", "item", "mutated", "typed", "string config"]))
    if kind == "any":
        return draw(JSON_LIKE)
    if kind == "item":
        return draw(st.dictionaries(st.sampled_from(_ATTRIBUTES) | _KEYS, JSON_LIKE, max_size=8))
    base = example_item(draw(st.sampled_from(EXAMPLES)))
    mutated = _replace_at(base, draw(st.lists(st.integers(0, 50), max_size=6)), draw(JSON_LIKE))
    if kind == "typed":
        try:
            return typed(mutated)
        except Exception:  # TypeSerializer refuses floats and odd types: then the item stays plain
            return mutated
    if kind == "string config" and isinstance(mutated, dict) and isinstance(mutated.get(CFG), dict):
        try:
            return {**mutated, CFG: json.dumps(mutated[CFG], default=str)}
        except (ValueError, TypeError, RecursionError):
            return mutated
    return mutated


@settings(max_examples=400, deadline=None)
@given(item=_items())
def test_any_input_gives_a_spec_or_a_spec_error(item: Any) -> None:
    """The validator is total: a ModelSpec or a SpecError whose lines name model, field and why."""
    try:
        spec = parse_model_item(item)
    except SpecError as exc:
        problems = exc.problems
    else:
        assert spec.hash == parse_model_item(spec.document).hash
        return
    assert problems
    for problem in problems:
        line = str(problem)
        line.encode()  # printable to any UTF-8 terminal: no lone surrogates in the message
        assert len(line) < 2000, line


@settings(max_examples=200, deadline=None)
@given(value=JSON_LIKE | _items())
def test_any_parameter_text_gives_a_spec_or_a_spec_error(value: Any) -> None:
    """A model parameter read back from SSM (whatever it holds) also gives a spec or a SpecError."""
    try:
        text = json.dumps({"schema": 1, "hash": "0", "spec": value}, default=str)
    except (ValueError, TypeError, RecursionError):
        text = "[" * 100_000
    with contextlib.suppress(SpecError):
        parse_spec_parameter(text)
