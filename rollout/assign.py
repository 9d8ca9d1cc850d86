"""Sticky, weighted variant choice: weighted rendezvous hashing (pure).

Every variant scores a conversation key as `-weight / ln(u)`, where `u` in (0, 1) is a hash of (key,
endpoint); the variants ranked by score give the sticky choice first and the failover order after it.
The chance to rank first is proportional to the weight, a key always ranks the variants the same way,
and when weights change only the keys whose winner's score changed relative to the others move: raising
a candidate from 5 to 25 moves ~20% of the conversations to it and none between the others. Weight 0
never ranks (never chosen, never failed over to).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from typing import Protocol, TypeVar


class Weighted(Protocol):
    @property
    def endpoint_name(self) -> str: ...

    @property
    def weight(self) -> float: ...


V = TypeVar("V", bound=Weighted)

_SCALE = float(1 << 64)


def unit_hash(key: str, endpoint: str) -> float:
    """A uniform number in (0, 1) for (key, endpoint), the same in every process and release."""
    digest = hashlib.blake2b(f"{endpoint}\0{key}".encode(), digest_size=8).digest()
    return (int.from_bytes(digest, "big") + 0.5) / _SCALE


def score(key: str, endpoint: str, weight: float) -> float:
    return -weight / math.log(unit_hash(key, endpoint))


def rank_variants(variants: Iterable[V], key: str) -> list[V]:
    """The variants with weight > 0, best first for `key`: the first is its sticky choice."""
    scored = [(score(key, v.endpoint_name, v.weight), v) for v in variants if v.weight > 0]
    scored.sort(key=lambda pair: pair[0], reverse=True)
    return [v for _, v in scored]
