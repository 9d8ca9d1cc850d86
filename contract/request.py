"""Request building: FastChat generation parameters -> the endpoint's JSON body (pure).

A request is a deep copy of `request.defaults` with each mapped canonical field written at its path.
What a field sends when the chat request does not set it (documented in README "Request rules"):

| field                | set by the request                            | not set                         |
|----------------------|-----------------------------------------------|---------------------------------|
| prompt               | always written                                | (required)                      |
| messages             | the OpenAI-format turns (the API sends them), | one user message holding the    |
|                      | roles and texts; a config maps `messages` or  | prompt (the web UI sends only a |
|                      | `prompt` or both                              | prompt)                         |
| stream               | always `true`: workers always stream          | `true`                          |
| stop                 | a list (a string becomes a one-item list),    | key removed (the defaults' stop |
|                      | at most 4 sent (TGI's limit); all are         | is an example, never sent)      |
|                      | enforced while decoding; at most 16 strings   |                                 |
|                      | of 512 characters, else refused               |                                 |
| seed                 | written                                       | key removed (no example seed)   |
| temperature          | see sampling rules                            | defaults' value                 |
| top_p                | >= 1.0 means "off": key removed               | defaults' value                 |
| top_k                | <= 0 (FastChat's -1) means "off": key removed | defaults' value                 |
| do_sample            | see sampling rules                            | defaults' value                 |
| other mapped fields  | written as given                              | defaults' value                 |

Sampling rules follow what the config maps. Where `do_sample` is mapped (TGI, LMI), temperature ~0
means greedy: `do_sample: false` and temperature, top_p, top_k and typical_p are removed (TGI rejects
temperature 0 and top_p 1.0); a positive temperature sets `do_sample: true`. Where it is not mapped
(OpenAI-style), the temperature is sent as given, 0 included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contract.jsonpaths import delete_at, set_at
from contract.spec import ModelSpec

GREEDY_TEMPERATURE = 1e-5
MAX_STOP_SENT = 4
# Every stop string is searched for in every chunk of the reply: a request may ask for this many.
MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 512
# Parameters that only mean something when sampling; TGI samples whenever one of them is set.
_SAMPLING_ONLY = ("temperature", "top_p", "top_k", "typical_p")
# Marks a field whose key is deleted from the body (an example value must not reach a real chat).
REMOVE: Any = object()


class RequestError(ValueError):
    """A chat request this model cannot serve (e.g. no prompt)."""


def _stop_items(stop: Any) -> list[Any] | None:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return list(stop) if isinstance(stop, list | tuple) else None


def stop_problem(stop: Any) -> str | None:
    """Why a request's `stop` cannot be served (build_request refuses it), or None."""
    items = _stop_items(stop)
    if items is None:
        return f"stop must be a string or a list of strings, not {type(stop).__name__}"
    if len(items) > MAX_STOP_STRINGS:
        return f"stop holds {len(items)} strings; the limit is {MAX_STOP_STRINGS}"
    if any(isinstance(s, str) and len(s) > MAX_STOP_CHARS for s in items):
        return f"a stop string is longer than {MAX_STOP_CHARS} characters"
    return None


def normalize_stop(stop: Any) -> list[str]:
    """FastChat's `stop` may be None, a string or a list: always a list of distinct non-empty strings.
    Total: a `stop` that stop_problem refuses gives what can be read of it (the request fails anyway)."""
    out: list[str] = []
    for s in (_stop_items(stop) or [])[:MAX_STOP_STRINGS]:
        if isinstance(s, str) and s and len(s) <= MAX_STOP_CHARS and s not in out:
            out.append(s)
    return out


def chat_messages(messages: Any, prompt: str) -> list[dict[str, str]]:
    """The OpenAI-format turns to send: the request's (role and text of each), else the prompt as one
    user message."""
    if isinstance(messages, list) and messages:
        out = [
            {"role": str(m.get("role")), "content": str(m.get("content"))}
            for m in messages
            if isinstance(m, Mapping) and isinstance(m.get("content"), str)
        ]
        if out:
            return out
    return [{"role": "user", "content": prompt}]


def _canonical_values(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The value to write per mapped field; the REMOVE marker deletes the key; absent keeps the default."""
    mapped = spec.request_mapping
    values: dict[str, Any] = {k: params[k] for k in mapped if k in params and params[k] is not None}
    prompt = params.get("prompt")
    if not isinstance(prompt, str):
        raise RequestError(f"{spec.name}: the request has no prompt text")
    values["prompt"] = prompt
    if "messages" in mapped:
        values["messages"] = chat_messages(params.get("messages"), prompt)
    values["stream"] = True
    problem = stop_problem(params.get("stop"))
    if problem:
        raise RequestError(f"{spec.name}: {problem}")
    stops = normalize_stop(params.get("stop"))
    values["stop"] = stops[:MAX_STOP_SENT] if stops else REMOVE
    if params.get("seed") is None:
        values["seed"] = REMOVE
    if "top_k" in values and values["top_k"] <= 0:
        values["top_k"] = REMOVE
    if "top_p" in values and values["top_p"] >= 1.0:
        values["top_p"] = REMOVE
    temperature = values.get("temperature")
    if "do_sample" in mapped and temperature is not None and "do_sample" not in params:
        greedy = temperature <= GREEDY_TEMPERATURE
        values["do_sample"] = not greedy
        if greedy:
            for key in _SAMPLING_ONLY:
                values[key] = REMOVE
    return values


def build_request(spec: ModelSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body for one chat request (a fresh object; the spec is never modified)."""
    body = spec.fresh_defaults()
    for key, value in _canonical_values(spec, params).items():
        path = spec.request_mapping.get(key)
        if path is None:
            continue
        assert path.steps is not None  # request paths are validated writable
        if value is REMOVE:
            delete_at(body, path.steps)
        else:
            set_at(body, path.steps, value)
    return body
