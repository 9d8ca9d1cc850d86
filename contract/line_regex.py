"""`response.regex_sub`: an operator's pattern, run on every streamed line, in time linear in the line.

Python's `re` backtracks: `(a+)+$` against 30 `a`s and a `b` takes minutes, and the decoder runs on the
worker's event loop, so one such pattern would freeze every stream of every model. Patterns are run by
RE2 (google-re2), which never backtracks: its time is linear in the line whatever the pattern. RE2 has no
backreferences, lookahead or lookbehind, and no possessive quantifiers: such patterns are refused when
the config is validated, as are patterns longer than MAX_REGEX_CHARS or compiling to more than
MAX_REGEX_PROGRAM RE2 instructions (counted repetitions like `a{1000}` grow the program).

A call into RE2 costs a few microseconds, as much as parsing the line's JSON. The usual pattern, `^`
and literal text (the seed's `^data:`), optionally followed by `\\s*`, is therefore applied as a prefix
removal: the same result as RE2's (tested), at a fraction of the cost (benchmarks/bench_decode.py).
"""

from __future__ import annotations

import re

import re2

MAX_REGEX_CHARS = 256
MAX_REGEX_PROGRAM = 512

# `^`, then characters that are literal in RE2 outside a class, then optionally `\s*`.
_PLAIN_PREFIX = re.compile(r"\^([A-Za-z0-9 _:;,=!\"'#%&<>@~/-]*)(\\s\*)?")
_RE2_SPACE = "\t\n\f\r "  # what RE2's \s matches


class RegexError(ValueError):
    """A pattern that cannot be a regex_sub; the message says why."""


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False  # RE2 logs every refused pattern to stderr otherwise
    return options


def _refusal(pattern: str, exc: re2.error) -> str:
    why = exc.args[0] if exc.args else "invalid"
    why = why.decode(errors="replace") if isinstance(why, bytes) else str(why)
    try:
        re.compile(pattern)  # only compiled, never run: tells RE2's missing features from typos
    except (re.error, RecursionError, OverflowError, ValueError):
        return f"{pattern!r} is not a valid regular expression ({why})"
    return (
        f"{pattern!r} cannot be run by RE2, the linear-time engine regex_sub uses ({why}): "
        "backreferences, lookahead, lookbehind and possessive quantifiers are not supported"
    )


class LineRegex:
    """A compiled `regex_sub`: `sub(line)` removes every match of the pattern from the line."""

    __slots__ = ("_once", "_prefix", "_regexp", "_strip_space", "pattern")

    def __init__(self, pattern: str) -> None:
        if len(pattern) > MAX_REGEX_CHARS:
            raise RegexError(f"is {len(pattern)} characters long; the limit is {MAX_REGEX_CHARS}")
        try:
            encoded = pattern.encode()
        except UnicodeEncodeError:
            raise RegexError("is not valid Unicode text (it holds a lone surrogate)") from None
        try:
            regexp = re2.compile(encoded, _options())
        except re2.error as exc:
            raise RegexError(_refusal(pattern, exc)) from None
        if regexp.programsize > MAX_REGEX_PROGRAM:
            raise RegexError(
                f"{pattern!r} compiles to {regexp.programsize} RE2 instructions; the limit is "
                f"{MAX_REGEX_PROGRAM} (counted repetitions like {{100}} multiply the pattern)"
            )
        self.pattern = pattern
        self._regexp = regexp
        plain = _PLAIN_PREFIX.fullmatch(pattern)
        self._prefix = plain.group(1) if plain else None
        self._strip_space = bool(plain and plain.group(2))
        # `^...` without alternation or flags (which could add (?m)) matches at most once: one RE2 call.
        self._once = pattern.startswith("^") and "|" not in pattern and "(?" not in pattern

    def sub(self, line: str) -> str:
        """The line without the pattern's matches (RE2's leftmost-first semantics, like Python's)."""
        prefix = self._prefix
        if prefix is not None:
            if not line.startswith(prefix):
                return line
            rest = line[len(prefix) :]
            return rest.lstrip(_RE2_SPACE) if self._strip_space else rest
        return self.sub_re2(line)

    def sub_re2(self, line: str) -> str:
        """`sub` through RE2 itself (what every pattern but a literal prefix takes)."""
        data = line.encode(errors="surrogatepass")
        match = self._regexp.search(data)
        if match is None:
            return line
        pieces: list[bytes] = []
        kept = 0
        while match is not None:
            start, end = match.span()
            pieces.append(data[kept:start])
            kept = end
            if end >= len(data) or self._once:
                break
            # An empty match must not match again at the same place: move on one byte.
            match = self._regexp.search(data, end + 1 if end == start else end)
        pieces.append(data[kept:])
        return b"".join(pieces).decode(errors="replace")  # `\C` may cut a character in two
