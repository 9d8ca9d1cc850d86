"""The all-models rules, implemented once for the sync Lambda and the CLI."""

from __future__ import annotations

from typing import Any

import pytest

from contract.registry import ActiveListError, evaluate_registry, parse_active_list
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
