"""The model-set snapshot in SSM Parameter Store: names, manifest encoding and paging (pure).

Layout under a prefix (default `/sagemaker-fastchat`), fixed once published (docs/design.md):
- `<prefix>/models/<encoded name>`: one model's spec envelope `{"schema", "hash", "spec"}`.
- `<prefix>/model-set`: the manifest, written last. Its SSM version *is* the model-set version.
  Body: `{"schema": 1, "models": [[name, parameter, version, hash], ...], "rejected": {name: reason},
  "warnings": [...]}` with `parameter` relative to the prefix and `version` the SSM version of that
  model parameter, so every past manifest version resolves to exact specs via `name:version` selectors.
  When the registry's current state cannot be published at all (no usable `all-models`, or a set too big
  for SSM), the sync republishes the last good models with `"not_published": <why>` (absent otherwise,
  so older manifests keep their hash): operators and workers see the reason, nothing wedges.
- When the body exceeds one parameter (8 KB), it is cut into pages `<prefix>/model-set-pages/<i>`
  written first, and the manifest holds `{"schema": 1, "pages": [[parameter, version, hash], ...],
  "hash": <body hash>}`. At most MAX_PAGES pages: about 1,000 models with 64-character names.

Model names are display labels (`Llama 2 (70B)`); SSM names allow only `a-zA-Z0-9_.-/`. The encoding keeps
ASCII letters, digits and `-`, and writes every other UTF-8 byte as `_XX` (upper-case hex), `_` included,
so it is collision-free and reversible: `Llama 2 (70B)` -> `Llama_202_20_2870B_29`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from contract.spec import canonical_json, content_hash

MANIFEST_SCHEMA = 1
MAX_PARAMETER_BYTES = 8192  # SSM Advanced tier; Standard holds 4096
PAGE_BYTES = 8000
MAX_PAGES = 32
MAX_REASON_CHARS = 400
DEFAULT_PREFIX = "/sagemaker-fastchat"

_KEEP = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-")
_PREFIX_RE = re.compile(r"^(/[A-Za-z0-9_.\-]+)+$")


class SnapshotError(ValueError):
    """A snapshot that cannot be written or read as the contract says."""


def encode_model_name(name: str) -> str:
    return "".join(chr(b) if b in _KEEP else f"_{b:02X}" for b in name.encode())


def decode_model_name(encoded: str) -> str:
    out = bytearray()
    i = 0
    while i < len(encoded):
        if encoded[i] == "_":
            out.append(int(encoded[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(ord(encoded[i]))
            i += 1
    return out.decode()


def validate_prefix(prefix: str) -> str:
    """An SSM path prefix: `/a/b`, no trailing slash, not under the reserved `aws`/`ssm` roots."""
    if not _PREFIX_RE.match(prefix):
        raise SnapshotError(f"SSM prefix {prefix!r} must look like /name or /a/b (letters, digits, _ . -)")
    if prefix.lower().startswith(("/aws", "/ssm")):
        raise SnapshotError(f"SSM prefix {prefix!r}: names starting with aws or ssm are reserved by AWS")
    return prefix


def model_parameter(name: str) -> str:
    """A model's parameter name relative to the prefix."""
    return f"models/{encode_model_name(name)}"


def manifest_name(prefix: str) -> str:
    return f"{prefix}/model-set"


def page_name(prefix: str, index: int) -> str:
    return f"{prefix}/model-set-pages/{index}"


def tier_for() -> Literal["Intelligent-Tiering"]:
    """SSM's Intelligent-Tiering stores <= 4 KB as Standard and moves a parameter to Advanced only when a
    value needs it, and never needs a downgrade (AWS cannot turn Advanced back into Standard)."""
    return "Intelligent-Tiering"


@dataclass(frozen=True)
class ManifestEntry:
    name: str
    parameter: str  # relative to the prefix
    version: int
    hash: str


@dataclass(frozen=True)
class Manifest:
    """The published model set: active models in display order, plus rejections and warnings, and why
    the registry's latest state was not published when it could not be (`not_published`, else "")."""

    models: tuple[ManifestEntry, ...] = ()
    rejected: Mapping[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    not_published: str = ""

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "schema": MANIFEST_SCHEMA,
            "models": [[e.name, e.parameter, e.version, e.hash] for e in self.models],
            "rejected": {k: v[:MAX_REASON_CHARS] for k, v in sorted(self.rejected.items())},
            "warnings": [w[:MAX_REASON_CHARS] for w in self.warnings],
        }
        if self.not_published:
            body["not_published"] = self.not_published[:MAX_REASON_CHARS]
        return body

    @property
    def hash(self) -> str:
        return content_hash(self.body())

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(e.name for e in self.models)

    def entry(self, name: str) -> ManifestEntry | None:
        return next((e for e in self.models if e.name == name), None)

    @classmethod
    def from_body(cls, body: Any) -> Manifest:
        try:
            if body["schema"] != MANIFEST_SCHEMA:
                raise SnapshotError(f"manifest schema {body['schema']!r} is not supported (expected 1)")
            models = tuple(ManifestEntry(str(n), str(p), int(v), str(h)) for n, p, v, h in body["models"])
            return cls(
                models,
                {str(k): str(v) for k, v in dict(body.get("rejected", {})).items()},
                tuple(str(w) for w in body.get("warnings", ())),
                str(body.get("not_published", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, SnapshotError):
                raise
            raise SnapshotError(f"the manifest is malformed ({exc!r})") from None


def split_pages(text: str) -> list[str]:
    """Cut text into pieces of at most PAGE_BYTES UTF-8 bytes, never inside a character."""
    data = text.encode()
    pages: list[str] = []
    start = 0
    while start < len(data):
        end = min(start + PAGE_BYTES, len(data))
        while end < len(data) and (data[end] & 0xC0) == 0x80:  # continuation byte: back off
            end -= 1
        pages.append(data[start:end].decode())
        start = end
    return pages


@dataclass(frozen=True)
class EncodedManifest:
    """What the publisher writes: page texts (maybe none) and a function of their versions -> manifest."""

    body_text: str
    pages: tuple[str, ...]

    @property
    def body_hash(self) -> str:
        return content_hash(json.loads(self.body_text))

    def manifest_text(self, prefix: str, page_versions: list[int]) -> str:
        if not self.pages:
            return self.body_text
        refs = [
            [page_name(prefix, i), v, content_hash(p)]
            for i, (p, v) in enumerate(zip(self.pages, page_versions, strict=True))
        ]
        return canonical_json({"schema": MANIFEST_SCHEMA, "pages": refs, "hash": self.body_hash})


def encode_manifest(manifest: Manifest) -> EncodedManifest:
    """Encode a manifest, paging it when it exceeds one parameter; refuse beyond MAX_PAGES."""
    text = canonical_json(manifest.body())
    if len(text.encode()) <= MAX_PARAMETER_BYTES:
        return EncodedManifest(text, ())
    pages = split_pages(text)
    if len(pages) > MAX_PAGES:
        raise SnapshotError(
            f"the model set ({len(manifest.models)} models) needs {len(pages)} manifest pages of 8 KB; "
            f"the limit is {MAX_PAGES}. Remove models or shorten names and rejection reasons."
        )
    return EncodedManifest(text, tuple(pages))


@dataclass(frozen=True)
class PageRef:
    parameter: str
    version: int
    hash: str


def parse_manifest_text(text: str) -> Manifest | list[PageRef]:
    """A manifest parameter's value: the manifest itself, or the pages to fetch and join (join_pages)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"the manifest parameter is not JSON ({exc.msg})") from None
    if isinstance(doc, dict) and "pages" in doc:
        try:
            return [PageRef(str(p), int(v), str(h)) for p, v, h in doc["pages"]]
        except (TypeError, ValueError) as exc:
            raise SnapshotError(f"the manifest's page list is malformed ({exc})") from None
    return Manifest.from_body(doc)


def join_pages(refs: list[PageRef], texts: list[str]) -> Manifest:
    """Rebuild a paged manifest, verifying each page's hash."""
    for ref, text in zip(refs, texts, strict=True):
        if content_hash(text) != ref.hash:
            raise SnapshotError(f"manifest page {ref.parameter}:{ref.version} does not match its hash")
    try:
        return Manifest.from_body(json.loads("".join(texts)))
    except json.JSONDecodeError as exc:
        raise SnapshotError(f"the joined manifest pages are not JSON ({exc.msg})") from None
