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


def describe_model(name: object) -> str:
    """A printable label for a model whose name may itself be the invalid part."""
    if isinstance(name, str) and name.strip():
        return name
    return f"<model {name!r}>"
