"""SSM snapshot encoding: collision-free names, manifest paging, limits."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contract.snapshot import (
    MAX_PARAMETER_BYTES,
    Manifest,
    ManifestEntry,
    SnapshotError,
    decode_model_name,
    encode_manifest,
    encode_model_name,
    join_pages,
    parse_manifest_text,
    split_pages,
    validate_prefix,
)
from contract.spec import content_hash

SSM_NAME = re.compile(r"^[A-Za-z0-9_.\-/]+$")


@given(st.text(min_size=1, max_size=64))
def test_name_encoding_is_reversible_and_ssm_safe(name: str) -> None:
    """Any display name encodes to SSM's character set and decodes back."""
    encoded = encode_model_name(name)
    assert SSM_NAME.match(encoded)
    assert decode_model_name(encoded) == name


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_name_encoding_is_collision_free(a: str, b: str) -> None:
    """Two different names never share a parameter."""
    if a != b:
        assert encode_model_name(a) != encode_model_name(b)


def test_documented_example() -> None:
    """The README's example."""
    assert encode_model_name("Llama 2 (70B)") == "Llama_202_20_2870B_29"
    assert encode_model_name("a_b") == "a_5Fb"


@pytest.mark.parametrize("prefix", ["", "x", "/a/", "/a b", "/aws/x", "/SSM"])
def test_invalid_prefixes(prefix: str) -> None:
    """Prefixes must be SSM paths outside AWS's reserved roots."""
    with pytest.raises(SnapshotError):
        validate_prefix(prefix)


def manifest_of(n: int, name_len: int) -> Manifest:
    entries = tuple(
        ManifestEntry(f"{i:04d}" + "m" * (name_len - 4), f"models/{i}", 100, content_hash(i))
        for i in range(n)
    )
    return Manifest(entries, {"bad": "why " * 50}, ("warn",))


def test_small_manifest_is_inline() -> None:
    """A manifest that fits one parameter is written as is."""
    encoded = encode_manifest(manifest_of(3, 10))
    assert encoded.pages == ()
    parsed = parse_manifest_text(encoded.manifest_text("/p", []))
    assert isinstance(parsed, Manifest)
    assert parsed == manifest_of(3, 10)


def test_200_models_with_longest_names_round_trip_through_pages() -> None:
    """200 models with 64-character names exceed 8 KB: they are paged, and read back exactly."""
    manifest = manifest_of(200, 64)
    encoded = encode_manifest(manifest)
    assert encoded.pages
    assert all(len(p.encode()) <= MAX_PARAMETER_BYTES for p in encoded.pages)
    text = encoded.manifest_text("/p", [1] * len(encoded.pages))
    assert len(text.encode()) <= MAX_PARAMETER_BYTES
    refs = parse_manifest_text(text)
    assert isinstance(refs, list)
    assert join_pages(refs, list(encoded.pages)) == manifest


def test_beyond_the_maximum_is_refused() -> None:
    """Past MAX_PAGES pages the set is refused with a reason, never truncated."""
    with pytest.raises(SnapshotError, match="the limit is"):
        encode_manifest(manifest_of(5000, 64))


def test_tampered_page_is_detected() -> None:
    """A page whose content does not match its hash is refused."""
    encoded = encode_manifest(manifest_of(200, 64))
    refs = parse_manifest_text(encoded.manifest_text("/p", [1] * len(encoded.pages)))
    assert isinstance(refs, list)
    pages = list(encoded.pages)
    pages[0] = pages[0].replace("0000", "9999", 1)
    with pytest.raises(SnapshotError, match="does not match"):
        join_pages(refs, pages)


@given(st.text(max_size=30000))
def test_split_pages_never_cuts_a_character(text: str) -> None:
    """Pages are cut at character boundaries and join back exactly."""
    pages = split_pages(text)
    assert "".join(pages) == text
    assert all(len(p.encode()) <= 8000 for p in pages)


def test_malformed_manifests() -> None:
    """Unreadable manifests are clear errors."""
    for text in ("nope", '{"schema": 2, "models": []}', '{"schema": 1}', '{"pages": [[1]]}'):
        with pytest.raises(SnapshotError):
            parse_manifest_text(text)
