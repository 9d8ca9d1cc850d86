"""One local stack (the README's first command) shared by the end-to-end and browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.local_stack import LocalStack


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    stack = LocalStack()
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()
