"""Model spec parsing and validation: every accepted form, every refusal names model, field and why."""

from __future__ import annotations

import json
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from contract.errors import SpecError
from contract.spec import parse_model_item, parse_spec_parameter, spec_parameter_value
from tests.helpers import EXAMPLES, example_item

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
        *parents, last = path.split(".")
        node = cfg
        for p in parents:
            node = node[p]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()
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
    if isinstance(name, str) and name.strip() == name and name and name.isprintable():
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
