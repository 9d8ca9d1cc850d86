"""A request's pure half: any batching of the streamed bytes gives the same FastChat output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from contract.spec import parse_model_item
from runtime.adapter import Generation
from sagemaker_fastchat.standin import demo
from tests.helpers import example_item

SPEC = parse_model_item(example_item("tgi"))


def lines(prompt: str) -> list[bytes]:
    return demo.render_lines("tgi", "demo-tgi", demo.plan("tgi", "demo-tgi", {"inputs": prompt}))


def run(batches: list[bytes], **params: Any) -> tuple[list[str], dict[str, Any], bool]:
    generation = Generation(SPEC, None, {"prompt": "p", **params})
    shown = []
    for data in batches:
        chunk = generation.feed(data)
        if chunk is not None:
            shown.append(chunk["text"])
        if generation.done:
            break
    return shown, generation.finish(), generation.done


@given(st.lists(st.integers(1, 40), min_size=1, max_size=40))
def test_any_batching_gives_the_same_final_chunk(sizes: list[int]) -> None:
    parts = lines("[[say:one two three four five six seven eight nine ten]]")
    one_by_one = run(parts)[1]
    batches, i = [], 0
    for size in sizes * 10:
        batches.append(b"".join(parts[i : i + size]))
        i += size
    batches.append(b"".join(parts[i:]))
    shown, final, _ = run([b for b in batches if b])
    assert final == one_by_one
    assert final["text"] == "one two three four five six seven eight nine ten"
    assert all(final["text"].startswith(text) for text in shown)


def test_a_stop_string_inside_a_batch_cuts_the_text_and_ends_the_generation() -> None:
    shown, final, done = run([b"".join(lines("[[say:alpha beta USER: gamma delta]]"))], stop=["USER:"])
    assert done
    assert final["text"] == "alpha beta "
    assert final["finish_reason"] == "stop"
    assert shown == ["alpha beta "]


def test_an_error_line_inside_a_batch_shows_the_text_before_it_then_the_error() -> None:
    error = b'data:{"error": "CUDA out of memory", "error_type": "generation"}\n\n'
    shown, final, done = run([b"".join(lines("[[say:alpha beta]]")[:2]) + error])
    assert done
    assert shown == ["alpha beta"]
    assert final["error_code"] != 0
    assert "CUDA out of memory" in final["text"]
    assert "demo-tgi" in final["text"]


class NoCalls:
    """A SageMaker client that must not be used."""

    async def get(self) -> Any:
        raise AssertionError("the endpoint was called")


async def collect(batches: AsyncIterator[bytes]) -> list[bytes]:
    return [data async for data in batches]


def test_a_request_the_spec_refuses_fails_before_any_call() -> None:
    generation = Generation(SPEC, NoCalls(), {"prompt": None})  # type: ignore[arg-type]
    assert generation.done
    assert asyncio.run(collect(generation.batches())) == []
    assert generation.finish()["error_code"] != 0
