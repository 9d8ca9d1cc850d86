"""TTFT histograms with fixed bucket bounds, so counts from every worker and minute add up (pure).

Bucket i holds times-to-first-token in (BOUNDS[i-1], BOUNDS[i]] milliseconds; bucket 0 holds everything
up to BOUNDS[0], the last bucket (index len(BOUNDS)) everything above BOUNDS[-1]. The bounds grow by 20%
a step from 1 ms to about 2 minutes: a quantile read from them is within 20% of the true value, fine
enough for a "TTFT p95 at most 1.5x the live variant's" rule, in 65 buckets at most.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping

GROWTH = 1.2
BOUNDS: tuple[float, ...] = tuple(round(GROWTH**i, 3) for i in range(65))  # 1 ms .. ~140 s
BUCKETS = len(BOUNDS) + 1  # with the overflow bucket


def bucket_of(ms: float) -> int:
    """The bucket index of one TTFT in milliseconds (negative or NaN counts as the first bucket)."""
    if not ms > BOUNDS[0]:  # also NaN
        return 0
    return bisect.bisect_left(BOUNDS, ms)


def quantile(hist: Mapping[int, int], q: float) -> float:
    """The q-quantile (0..1) in milliseconds, interpolated linearly inside its bucket (as Prometheus'
    histogram_quantile does); NaN for an empty histogram. Indices outside 0..BUCKETS-1 and counts
    below 1 are ignored (counts come from a store anyone with the table's permissions can write)."""
    counts = {i: n for i, n in hist.items() if 0 <= i < BUCKETS and n > 0}
    total = sum(counts.values())
    if total == 0 or not 0 <= q <= 1:
        return math.nan
    rank = q * total
    seen = 0
    for index in sorted(counts):
        n = counts[index]
        if seen + n >= rank:
            low = 0.0 if index == 0 else BOUNDS[index - 1]
            high = BOUNDS[index] if index < len(BOUNDS) else BOUNDS[-1]
            return low + (high - low) * max(0.0, rank - seen) / n
        seen += n
    return BOUNDS[-1]  # unreachable: rank <= total
