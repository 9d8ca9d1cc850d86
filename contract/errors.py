"""Errors as values users can read: which model, which field, why."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one model: `field` is a dotted path into the registry item."""

    model: str
    field: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.model}: {self.field}" if self.field else self.model
        return f"{where}: {self.reason}"


class SpecError(ValueError):
    """A registry item that cannot become a model spec; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("; ".join(str(p) for p in problems))


_MAX_LABEL = 200  # longer names (invalid anyway) are cut


def describe_model(name: object) -> str:
    """A printable label for a model whose name may itself be the invalid part (a megabyte, a lone
    surrogate, a direction override): such names are shown by a truncated, escaped repr."""
    if isinstance(name, str) and name.strip() and name.isprintable() and len(name) <= _MAX_LABEL:
        return name
    try:
        shown = repr(name)
    except Exception:  # a Python caller's object with a broken __repr__
        shown = f"a {type(name).__name__}"
    if len(shown) > _MAX_LABEL:
        shown = shown[: _MAX_LABEL - 3] + "..."
    return f"<model {shown}>"
