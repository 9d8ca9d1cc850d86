"""The registry's `variants` attribute (issue 17): parsing, refusals as `model: variants[i].field: why`,
the published document, and hashes of specs without variants unchanged."""

from __future__ import annotations

import contextlib
import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contract.errors import SpecError
from contract.spec import parse_model_item, parse_spec_parameter, spec_parameter_value
from contract.variants import MAX_VARIANTS
from tests.helpers import EXAMPLES, example_item
from tests.unit.test_spec import JSON_LIKE, typed

CFG = "endpoint_req_config"
# The hashes of the shipped examples before issue 17 (computed by the code at 763ad16): a spec without
# `variants` must keep its hash, or every worker would see every model as changed after an upgrade.
HASHES_BEFORE = {
    "tgi": "708396becd517de2",
    "openai-sse": "65b53318f60298a7",
    "lmi-jsonlines": "134f8034f5adbfaf",
}


def with_variants(variants: Any, name: str = "tgi") -> dict[str, Any]:
    return {**example_item(name), "variants": variants}


@pytest.mark.parametrize("name", EXAMPLES)
def test_a_spec_without_variants_hashes_as_before(name: str) -> None:
    """No `variants` (or an empty list) leaves the document and hash exactly as they were."""
    spec = parse_model_item(example_item(name))
    assert spec.hash == HASHES_BEFORE[name]
    assert "variants" not in spec.document
    assert parse_model_item(with_variants([], name)).hash == spec.hash
    assert parse_model_item(with_variants("[]", name)).hash == spec.hash
    (only,) = spec.variants()
    assert (only.endpoint_name, only.weight, only.primary, only.spec) == (
        spec.endpoint_name,
        100.0,
        True,
        spec,
    )


def test_variants_in_every_form_give_one_spec() -> None:
    """A list, a JSON string and DynamoDB's typed list of maps parse alike; whole weights hash alike."""
    variants = [{"endpoint_name": "cand-1", "weight": 25}, {"endpoint_name": "cand-2", "weight": 12.5}]
    forms = [
        with_variants(variants),
        with_variants(json.dumps(variants)),
        with_variants([{"endpoint_name": "cand-1", "weight": 25.0}, variants[1]]),
        typed(with_variants(variants)),
        {**typed(example_item("tgi")), "variants": {"S": json.dumps(variants)}},
    ]
    assert len({parse_model_item(f).hash for f in forms}) == 1
    spec = parse_model_item(forms[0])
    assert spec.hash != parse_model_item(example_item("tgi")).hash
    assert [(v.endpoint_name, v.weight, v.primary) for v in spec.variants()] == [
        ("demo-tgi", 62.5, True),
        ("cand-1", 25.0, False),
        ("cand-2", 12.5, False),
    ]


def test_a_variant_is_a_full_spec_of_its_endpoint() -> None:
    """Each variant's spec: the model's name and attributes, its endpoint, its override or the item's
    config; the primary's spec is the model's."""
    override = example_item("openai-sse")[CFG]
    item = with_variants(
        [{"endpoint_name": "cand-1", "weight": 5}, {"endpoint_name": "cand-2", "weight": 0, CFG: override}]
    )
    item["conv_template"] = "llama-2"
    spec = parse_model_item(item)
    primary, same_config, own_config = spec.variants()
    assert primary.spec is spec
    assert same_config.spec.name == own_config.spec.name == "demo-tgi"
    assert same_config.spec.endpoint_name == "cand-1"
    assert same_config.spec.document[CFG] == spec.document[CFG]
    assert same_config.spec.conv_template == "llama-2"
    assert own_config.spec.document[CFG] == parse_model_item(example_item("openai-sse")).document[CFG]
    assert own_config.weight == 0.0
    assert "variants" not in same_config.spec.document
    assert same_config.spec.variants()[0].spec is same_config.spec  # a variant has no variants itself
    assert parse_model_item(same_config.spec.document).hash == same_config.spec.hash


def test_the_published_document_rebuilds_the_variants() -> None:
    """The SSM envelope carries the variants: the worker's parse_spec_parameter rebuilds them."""
    override = example_item("lmi-jsonlines")[CFG]
    spec = parse_model_item(
        with_variants([{"endpoint_name": "cand-1", "weight": 30, CFG: json.dumps(override)}])
    )
    text = json.dumps(spec_parameter_value(spec.document, spec.hash))
    again = parse_spec_parameter(text)
    assert again.hash == spec.hash
    assert [(v.endpoint_name, v.weight, v.spec.hash) for v in again.variants()] == [
        (v.endpoint_name, v.weight, v.spec.hash) for v in spec.variants()
    ]


def test_rollout_state_is_accepted_and_not_hashed() -> None:
    """`rollout` is control-plane state: any value is accepted and leaves the spec and its hash alone."""
    base = parse_model_item(example_item("tgi"))
    for state in ({"status": "running", "steps": [5, 25]}, "not even JSON", 7):
        spec = parse_model_item({**example_item("tgi"), "rollout": state})
        assert spec.hash == base.hash
        assert "rollout" not in spec.document


def test_config_hashes_ignore_weights_and_continue_across_a_rollout() -> None:
    """What a vote names (`config_hash`): each variant's endpoint and config, not the weights, so a
    rollout's weight steps keep one leaderboard row per config. The primary's equals the model's hash
    before the rollout began; the candidate's equals the model's hash once it is promoted."""
    before = parse_model_item(example_item("tgi"))
    assert before.config_hash == before.hash
    override = example_item("openai-sse")[CFG]
    steps = [
        parse_model_item(with_variants([{"endpoint_name": "cand", "weight": w, CFG: override}]))
        for w in (5, 25, 50)
    ]
    assert len({s.hash for s in steps}) == 3  # the model's hash moves with each step (the worker re-applies)
    primaries = {s.variants()[0].spec.config_hash for s in steps}
    candidates = {s.variants()[1].spec.config_hash for s in steps}
    assert primaries == {before.hash}
    promoted = parse_model_item({**example_item("tgi"), "endpoint_name": "cand", CFG: override})
    assert candidates == {promoted.hash}


V = "variants"
OK = {"endpoint_name": "cand-1", "weight": 10}
INVALID: list[tuple[str, Any, str, str]] = [
    ("not a list", {"endpoint_name": "x"}, V, "must be an array"),
    ("JSON string not JSON", "[{", V, "not valid JSON"),
    ("JSON string of a number", "5", V, "must be an array"),
    ("too many", [{"endpoint_name": f"c{i}", "weight": 1} for i in range(5)], V, f"limit is {MAX_VARIANTS}"),
    ("entry not an object", [OK, "cand-2"], f"{V}[1]", "must be an object"),
    ("unknown key", [{**OK, "wieght": 3}], f"{V}[0].'wieght'", "not a variant attribute"),
    ("endpoint missing", [{"weight": 3}], f"{V}[0].endpoint_name", "is missing"),
    ("endpoint invalid", [{**OK, "endpoint_name": "bad_name!"}], f"{V}[0].endpoint_name", "not a SageMaker"),
    ("endpoint not a string", [{**OK, "endpoint_name": 5}], f"{V}[0].endpoint_name", "not a SageMaker"),
    ("endpoint is the primary", [{**OK, "endpoint_name": "demo-tgi"}], f"{V}[0].endpoint_name", "already"),
    ("endpoint twice", [OK, OK], f"{V}[1].endpoint_name", "already an endpoint of this model"),
    ("weight missing", [{"endpoint_name": "c"}], f"{V}[0].weight", "is missing"),
    ("weight negative", [{**OK, "weight": -1}], f"{V}[0].weight", "from 0 to 100"),
    ("weight over 100", [{**OK, "weight": 101}], f"{V}[0].weight", "from 0 to 100"),
    ("weight a boolean", [{**OK, "weight": True}], f"{V}[0].weight", "from 0 to 100"),
    ("weight a string", [{**OK, "weight": "10"}], f"{V}[0].weight", "from 0 to 100"),
    ("weight NaN", [{**OK, "weight": float("nan")}], f"{V}[0].weight", "NaN"),
    ("weight NaN in JSON", '[{"endpoint_name": "c", "weight": NaN}]', f"{V}[0].weight", "from 0 to 100"),
    (
        "weight 400 digits",
        '[{"endpoint_name": "c", "weight": 1' + "0" * 400 + "}]",
        f"{V}[0].weight",
        "0 to 100",
    ),
    (
        "weights over 100",
        [{"endpoint_name": "a", "weight": 60}, {"endpoint_name": "b", "weight": 50.5}],
        V,
        "add up to 110.5",
    ),
    ("override not JSON", [{**OK, CFG: "{no"}], f"{V}[0].{CFG}", "not valid JSON"),
    (
        "override without text mapping",
        [
            {
                **OK,
                CFG: {"request": {"defaults": {}, "mapping": {"prompt": "$.p"}}, "response": {"mapping": {}}},
            }
        ],
        f"{V}[0].{CFG}.response.mapping.text",
        "is missing",
    ),
    (
        "override nested too deeply",
        [{**OK, CFG: "[" * 5000 + "]" * 5000}],
        f"{V}[0].{CFG}",
        "nests deeper",
    ),
]


@pytest.mark.parametrize(
    ("variants", "field", "words"), [i[1:] for i in INVALID], ids=[i[0] for i in INVALID]
)
def test_invalid_variants_are_refused_with_model_field_and_reason(
    variants: Any, field: str, words: str
) -> None:
    with pytest.raises(SpecError) as caught:
        parse_model_item(with_variants(variants))
    matching = [p for p in caught.value.problems if p.field == field]
    assert matching, caught.value.problems
    assert any(words in p.reason for p in matching), matching
    assert str(matching[0]).startswith(f"demo-tgi: {field}: ")


def test_every_variant_problem_is_reported_at_once() -> None:
    variants = [{"endpoint_name": "bad name", "weight": 200}, {"weight": "x"}, {**OK, CFG: "{"}]
    with pytest.raises(SpecError) as caught:
        parse_model_item(with_variants(variants))
    assert {p.field for p in caught.value.problems} >= {
        f"{V}[0].endpoint_name",
        f"{V}[0].weight",
        f"{V}[1].endpoint_name",
        f"{V}[1].weight",
        f"{V}[2].{CFG}",
    }


def test_variants_too_large_for_ssm_are_refused_by_name() -> None:
    """Four overrides of large defaults together exceed the SSM parameter: the problem names `variants`."""
    override = example_item("tgi")[CFG]
    override["request"]["defaults"]["pad"] = "x" * 2500
    variants = [{"endpoint_name": f"c{i}", "weight": 1, CFG: override} for i in range(MAX_VARIANTS)]
    with pytest.raises(SpecError) as caught:
        parse_model_item(with_variants(variants))
    (problem,) = caught.value.problems
    assert problem.field == V
    assert "8192" in problem.reason


_ENTRY = st.fixed_dictionaries(
    {},
    optional={
        "endpoint_name": st.sampled_from(["demo-tgi", "cand-1", "cand-2", "bad name", ""]) | JSON_LIKE,
        "weight": st.integers(-5, 120) | st.floats() | st.decimals() | JSON_LIKE,
        CFG: st.sampled_from([example_item(n)[CFG] for n in EXAMPLES]) | JSON_LIKE,
    },
)
_VARIANTS = st.lists(_ENTRY | JSON_LIKE, max_size=MAX_VARIANTS + 1) | JSON_LIKE


@settings(max_examples=300, deadline=None)
@given(variants=_VARIANTS, as_text=st.booleans(), as_typed=st.booleans())
def test_any_variants_value_gives_a_spec_or_a_spec_error(
    variants: Any, as_text: bool, as_typed: bool
) -> None:
    """Total: any `variants` value (plain, JSON text, typed) gives a spec whose weights add up to 100 and
    whose document parses back to the same hash, or `model: field: why` lines."""
    if as_text:
        with contextlib.suppress(ValueError, TypeError, RecursionError):
            variants = json.dumps(variants, default=str)
    item = with_variants(variants)
    if as_typed:
        with contextlib.suppress(Exception):  # TypeSerializer refuses floats and odd types: stays plain
            item = typed(item)
    try:
        spec = parse_model_item(item)
    except SpecError as exc:
        problems = exc.problems
    else:
        weights = [v.weight for v in spec.variants()]
        assert math.isclose(sum(weights), 100)
        assert all(0 <= w <= 100 for w in weights)
        assert parse_model_item(spec.document).hash == spec.hash
        return
    assert problems
    assert all(str(p).startswith("demo-tgi: ") and len(str(p)) < 2000 for p in problems)
