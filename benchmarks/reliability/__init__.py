"""Reliability harness (issue 13): swap under load, faults and bad input against the real local stack.

Run it with `./dev reliability` (see README, "Reliability harness"); `tests/reliability/` runs a short
profile of it in `./dev test`.
"""
