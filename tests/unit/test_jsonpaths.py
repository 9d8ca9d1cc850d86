"""MultiReader: many response paths read in one compiled pass, the same answers as one path at a time."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.jsonpaths import MAX_PATH_CHARS, MAX_PATH_STEPS, MISSING, JsonPath, MultiReader, PathSyntaxError

PATHS = {
    "text": "$.token.text",
    "special": "$.token.special",
    "finish": "$.details.finish_reason",
    "content": "$.choices[0].delta.content",
    "last": "$.choices[-1].index",
    "quoted": '$["it\'s \\\\ odd"]',
    "brackets": "$['}{)(:']",
    "any": "$.outputs[*].text",
}


def reader(paths: dict[str, str]) -> MultiReader:
    return MultiReader({name: JsonPath.compile(source) for name, source in paths.items()})


def one_by_one(paths: dict[str, str], doc: Any) -> dict[str, Any]:
    found = {name: JsonPath.compile(source).find(doc) for name, source in paths.items()}
    return {name: value for name, value in found.items() if value is not MISSING and value is not None}


def test_reads_nested_fields_indexes_and_odd_keys() -> None:
    doc = {
        "token": {"text": " hi", "special": False},
        "details": None,
        "choices": [{"delta": {"content": "x"}, "index": 0}, {"index": 1}],
        "it's \\ odd": 7,
        "}{)(:": 8,
        "outputs": [{"text": "a"}],
    }
    assert reader(PATHS).read(doc) == {
        "text": " hi",
        "special": False,
        "content": "x",
        "last": 1,
        "quoted": 7,
        "brackets": 8,
        "any": "a",
    }


@pytest.mark.parametrize(
    "doc", [None, 3, "s", [], [1, 2], {}, {"token": None}, {"token": [1]}, {"choices": {}}]
)
def test_wrong_shapes_and_nulls_find_nothing(doc: Any) -> None:
    assert reader(PATHS).read(doc) == {}


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["a", "b", "0"]), inner, max_size=3)
    ),
    max_leaves=12,
)


@given(json_values)
def test_same_answers_as_reading_each_path_alone(doc: Any) -> None:
    paths = {
        "ab": "$.a.b",
        "a0": "$.a[0]",
        "a1b": "$.a[1].b",
        "b": "$.b",
        "neg": "$.b[-1].a",
        "zero": "$['0']",
    }
    assert reader(paths).read(doc) == one_by_one(paths, doc)


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("$" + ".a" * (MAX_PATH_STEPS + 1), f"has {MAX_PATH_STEPS + 1} steps"),
        ("$" + "..a" * (MAX_PATH_STEPS + 1), f"has {MAX_PATH_STEPS + 1} steps"),  # not plain: counted too
        ("$" + "[*]" * (MAX_PATH_STEPS + 1), f"has {MAX_PATH_STEPS + 1} steps"),
        ("$." + "a" * MAX_PATH_CHARS, f"the limit is {MAX_PATH_CHARS}"),
        ("$" + ".a" * 5000, "10001 characters long"),
    ],
)
def test_paths_beyond_the_bounds_are_refused(source: str, words: str) -> None:
    """Paths are bounded in characters and steps, plain or not, before anything recurses over them."""
    with pytest.raises(PathSyntaxError, match=words):
        JsonPath.compile(source)


def test_many_paths_at_the_step_limit_share_one_reader() -> None:
    """Several MAX_PATH_STEPS-deep paths compile into one reader (its code nests two blocks per step)."""
    deep = "$" + "".join(f".k{i}" for i in range(MAX_PATH_STEPS - 1))
    paths = {"text": deep + ".text", "id": deep + ".id", "first": "$.k0[0]"}
    doc: Any = {"text": "t", "id": 3}
    for i in reversed(range(MAX_PATH_STEPS - 1)):
        doc = {f"k{i}": doc}
    assert reader(paths).read(doc) == {"text": "t", "id": 3}
