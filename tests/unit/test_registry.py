"""The all-models rules, implemented once for the sync Lambda and the CLI."""

from __future__ import annotations

from typing import Any

import pytest

from contract.registry import (
    MAX_ACTIVE_MODELS,
    MAX_WARNINGS,
    ActiveListError,
    evaluate_registry,
    parse_active_list,
)
from tests.helpers import example_item


def all_models(value: Any) -> dict[str, Any]:
    return {"model_name": "all-models", "model_names": value}


def test_trimming_and_display_order() -> None:
    """Names are trimmed and keep the order they are listed in."""
    assert parse_active_list(all_models(" b , a,c ")).names == ("b", "a", "c")


def test_duplicates_count_once_with_a_warning() -> None:
    """A repeated name keeps its first position and is reported."""
    active = parse_active_list(all_models("a,b,a"))
    assert active.names == ("a", "b")
    assert any("'a' is listed more than once" in w for w in active.warnings)


def test_empty_entries_are_ignored_with_a_warning() -> None:
    """A trailing or doubled comma is not a model."""
    active = parse_active_list(all_models("a,,b,"))
    assert active.names == ("a", "b")
    assert len(active.warnings) == 2


def test_explicitly_empty_list_is_a_decision() -> None:
    """An empty model_names means 'no models' (removing the last model on purpose)."""
    assert parse_active_list(all_models("")).names == ()
    assert parse_active_list(all_models("  ")).names == ()


@pytest.mark.parametrize("item", [None, {"model_name": "all-models"}, all_models(5), all_models(["a"])])
def test_missing_or_unreadable_list_publishes_nothing(item: Any) -> None:
    """No item, no attribute, or a non-string attribute gives no decision."""
    with pytest.raises(ActiveListError):
        parse_active_list(item)


def test_typed_all_models_item() -> None:
    """The all-models item may arrive in DynamoDB's typed form."""
    typed = {"model_name": {"S": "all-models"}, "model_names": {"S": "a,b"}}
    assert parse_active_list(typed).names == ("a", "b")


def test_registry_evaluation() -> None:
    """Listed valid items are specs; listed missing or invalid ones are rejected; the rest inactive."""
    good = {**example_item("tgi"), "model_name": "good"}
    bad = {**example_item("tgi"), "model_name": "bad", "endpoint_name": "not valid!"}
    idle = {**example_item("lmi-jsonlines"), "model_name": "idle"}
    state = evaluate_registry([good, bad, idle, all_models("good, bad, ghost")])
    assert state.active == ("good", "bad", "ghost")
    assert list(state.specs) == ["good"]
    assert "endpoint_name" in state.rejected["bad"]
    assert "no item" in state.rejected["ghost"]
    assert state.inactive == ("idle",)


def test_registry_without_all_models_raises() -> None:
    """A scan with no all-models item is not a decision."""
    with pytest.raises(ActiveListError, match="missing"):
        evaluate_registry([example_item("tgi")])


def test_a_huge_name_is_ignored_with_a_short_warning() -> None:
    """A 300 KB name cannot be a model (no item can hold it): ignored, warned about in a bounded line."""
    active = parse_active_list(all_models("a," + "x" * 300_000 + ",b"))
    assert active.names == ("a", "b")
    (warning,) = active.warnings
    assert "300000 characters" in warning
    assert len(warning) < 200


@pytest.mark.parametrize(
    "names", ["x" * 300_000, " , ,", "y" * 65 + ",,"], ids=["one-300k-name", "commas", "long-and-commas"]
)
def test_a_list_naming_no_usable_model_gives_no_decision(names: str) -> None:
    """A list that is not blank but names no usable model is a mistake, not 'remove every model'."""
    with pytest.raises(ActiveListError, match="names no usable model") as raised:
        parse_active_list(all_models(names))
    assert len(str(raised.value)) < 400


def test_too_many_names_give_no_decision() -> None:
    """More names than a manifest holds is refused as a whole, with the count and the limit."""
    with pytest.raises(ActiveListError, match=f"lists 10000 models; the limit is {MAX_ACTIVE_MODELS}"):
        parse_active_list(all_models(",".join(f"m{i}" for i in range(10_000))))


def test_warnings_are_bounded() -> None:
    """Thousands of duplicates give at most MAX_WARNINGS warnings, the last one counting the rest."""
    active = parse_active_list(all_models(",".join(["a"] * 5000)))
    assert active.names == ("a",)
    assert len(active.warnings) == MAX_WARNINGS
    assert active.warnings[-1] == f"... and {4999 - MAX_WARNINGS + 1} more warnings"
