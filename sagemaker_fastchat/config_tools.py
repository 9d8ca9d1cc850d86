"""Offline operator tools behind `sagemaker-fastchat config ...` (pure: files in, text out)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from contract.assembler import OutputAssembler
from contract.decoder import StreamDecoder
from contract.errors import Problem, SpecError, describe_model
from contract.items import InputError
from contract.registry import ActiveListError, parse_active_list
from contract.request import build_request, normalize_stop
from contract.spec import ALL_MODELS_KEY, ModelSpec, parse_model_item

MAX_CONFIG_FILE_BYTES = 1 << 20  # one config or item (DynamoDB holds at most 400 KB per item)
MAX_ITEMS_FILE_BYTES = 64 << 20  # a registry dump (`config validate`)


def read_text_file(path: str, max_bytes: int) -> str:
    """A UTF-8 file's text, or InputError with one line (unreadable, not UTF-8, over `max_bytes`). At
    most `max_bytes` + 1 bytes are read, so a huge file or a device (/dev/zero) costs nothing."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise InputError(f"{path}: larger than {max_bytes:,} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:  # a binary file: one line, not a traceback
        raise InputError(f"{path}: is not UTF-8 text (byte {exc.start})") from None


def pick_item(items: list[dict[str, Any]], model: str | None, source: str = "input") -> dict[str, Any]:
    models = [i for i in items if i.get("model_name") != ALL_MODELS_KEY]
    if model is not None:
        found = [i for i in models if i.get("model_name") == model]
        if not found:
            names = ", ".join(repr(i.get("model_name")) for i in models)
            raise InputError(f"{source}: no model named {model!r} (found: {names})")
        return found[0]
    if len(models) != 1:
        raise InputError(f"{source}: holds {len(models)} models; choose one with --model NAME")
    return models[0]


@dataclass
class ValidationReport:
    models: list[str] = field(default_factory=list)  # valid model names
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        return {
            "valid": self.ok,
            "models": self.models,
            "problems": [asdict(p) for p in self.problems],
            "warnings": self.warnings,
        }


def validate_items(items: list[dict[str, Any]]) -> ValidationReport:
    """Validate every model item; when an `all-models` item is present, apply the registry rules too."""
    report = ValidationReport()
    by_name: dict[str, dict[str, Any]] = {}
    all_models = None
    for item in items:
        if item.get("model_name") == ALL_MODELS_KEY:
            all_models = item
            continue
        try:
            report.models.append(parse_model_item(item).name)
        except SpecError as exc:
            report.problems.extend(exc.problems)
        if isinstance(item.get("model_name"), str):
            by_name[item["model_name"]] = item
    if all_models is not None:
        try:
            active = parse_active_list(all_models)
        except ActiveListError as exc:
            report.problems.append(Problem(ALL_MODELS_KEY, "model_names", str(exc)))
        else:
            report.warnings.extend(active.warnings)
            for name in active.names:
                if name not in by_name:
                    report.problems.append(
                        Problem(
                            describe_model(name),  # a listed name may hold anything: shown escaped
                            f"{ALL_MODELS_KEY}.model_names",
                            "is listed but the file has no item with this model_name",
                        )
                    )
            report.warnings.extend(
                f"{n}: not listed in {ALL_MODELS_KEY} (inactive)" for n in by_name if n not in active.names
            )
    return report


def parse_set(values: list[str]) -> dict[str, Any]:
    """`--set key=value`: the value is JSON when it parses as JSON, else a plain string."""
    params: dict[str, Any] = {}
    for value in values:
        key, sep, raw = value.partition("=")
        if not sep or not key:
            raise InputError(f"--set expects key=value, got {value!r}")
        try:
            params[key] = json.loads(raw)
        except json.JSONDecodeError:
            params[key] = raw
    return params


DEFAULT_PROMPT = "Hello!"


def request_body(spec: ModelSpec, sets: dict[str, Any]) -> dict[str, Any]:
    return build_request(spec, {"prompt": DEFAULT_PROMPT, **sets})


def decode_stream(spec: ModelSpec, data: bytes, part_size: int, stop: Any = None) -> Iterator[dict[str, Any]]:
    """One dict per decoded event, then {"final": ...} with the text FastChat would show."""
    decoder = StreamDecoder(spec)
    assembler = OutputAssembler(stop=normalize_stop(stop))
    size = part_size if part_size > 0 else max(len(data), 1)
    parts = [data[i : i + size] for i in range(0, len(data), size)]
    for event in decoder.decode(parts):
        yield _event_dict(event)
        if event.error:
            yield {"final": {"error": event.error, "text": assembler.visible}}
            return
        assembler.push(event)
    yield {"final": assembler.finish()}


def _event_dict(event: Any) -> dict[str, Any]:
    return {k: v for k, v in asdict(event).items() if v is not None and v is not False}
