"""Registry items from a file's JSON: one item, a list of items, or a scan dump (pure)."""

from __future__ import annotations

import json
from typing import Any

from contract.dynamo import untype_item


class InputError(ValueError):
    """The file given to a config command cannot be used (one clear line)."""


def read_json(text: str, source: str = "input") -> Any:
    """A file's JSON, or InputError with one clear line (never a traceback, whatever the text holds)."""
    try:
        return json.loads(text, strict=False)  # the seed's configs hold raw newlines in strings
    except json.JSONDecodeError as exc:
        raise InputError(f"{source}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:
        raise InputError(f"{source}: JSON nested too deeply to read") from None
    except ValueError as exc:  # e.g. a number past Python's 4,300-digit conversion limit
        raise InputError(f"{source}: cannot be read as JSON ({str(exc)[:120]})") from None


def load_items(text: str, source: str = "input") -> list[dict[str, Any]]:
    """Registry items from JSON: one item, a list of items, or a scan dump (`{"Items": [...]}`)."""
    doc = read_json(text, source)
    if isinstance(doc, dict) and isinstance(doc.get("Items"), list):
        doc = doc["Items"]
    items = doc if isinstance(doc, list) else [doc]
    if not items or not all(isinstance(i, dict) for i in items):
        raise InputError(
            f"{source}: expected a registry item, a list of items or a scan dump ({{'Items': [...]}})"
        )
    return [untype_item(i) for i in items]
