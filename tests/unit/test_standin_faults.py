"""Stand-in faults on demand (sagemaker_fastchat/standin/faults.py): the document is checked totally and
an error rate fails exactly that share of invocations, evenly spread."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sagemaker_fastchat.standin.faults import Fault, parse_fault

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    st.dictionaries(
        st.sampled_from(["error_rate", "error", "refuse", "drop_after", "first_token_delay", "status", "x"]),
        JSON,
    )
    | JSON
)
def test_any_document_gives_a_fault_or_a_reason(doc: Any) -> None:
    result = parse_fault(doc)
    assert isinstance(result, Fault | str)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"error_rate": 2}, "error_rate"),
        ({"error": "boom"}, "error: must be one of"),
        ({"refuse": "yes"}, "refuse"),
        ({"drop_after": -1}, "drop_after"),
        ({"first_token_delay": 1e9}, "first_token_delay"),
        ({"status": "Sleeping"}, "status"),
        ({"nope": 1}, "unknown field"),
        ([], "JSON object"),
    ],
)
def test_bad_fields_are_named(doc: Any, why: str) -> None:
    result = parse_fault(doc)
    assert isinstance(result, str)
    assert why in result


@pytest.mark.parametrize("rate", [0.0, 0.01, 0.25, 0.5, 1.0])
def test_an_error_rate_fails_exactly_that_share(rate: float) -> None:
    fault = parse_fault({"error_rate": rate})
    assert isinstance(fault, Fault)
    failed = sum(fault.take_error() for _ in range(400))
    assert failed == round(400 * rate)
    assert fault.describe()["injected"] == failed
