"""Arena votes: the record, its validation, which counters it moves, and FastChat log import (pure).

A vote names the exact version of each model that answered (model-set version, endpoint, spec hash,
template, and the variant (endpoint) that answered), so ratings can follow a model across changes.
Counters (the per-pair outcome counts the leaderboard fits from) are kept per tab, per view (model name,
or name@spec-hash) and per day plus an all-time bucket, so a leaderboard never reads the votes themselves.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

from arena.ratings import Outcomes, PairOutcome

PAIR_TYPES = ("leftvote", "rightvote", "tievote", "bothbad_vote")
SINGLE_TYPES = ("upvote", "downvote", "flag")
VOTE_TYPES = PAIR_TYPES + SINGLE_TYPES
TABS = ("battle", "side_by_side", "direct")
VIEWS = ("name", "version")
ALL_TIME = "all"
MAX_ID = 128
MAX_TEXT = 64_000  # per message, when the operator keeps conversation text
MAX_FIELD = 256
DEFAULT_MAX_VOTES_PER_VOTER_PER_DAY = 100
VOTERS_BUCKET = "voters"  # counts-table items "voters|<day>" / <voter key>: rated votes per voter per day


@dataclass(frozen=True)
class ModelRef:
    """One model as it answered: the live model set's entry for it at vote time."""

    name: str
    version: int | None = None  # model-set version
    endpoint: str = ""  # the model's (primary) endpoint
    spec_hash: str = ""
    conv_template: str = ""
    variant: str = ""  # the endpoint that answered (one of the model's variants; "" when unknown)

    def key(self, view: str) -> str:
        return f"{self.name}@{self.spec_hash}" if view == "version" else self.name


@dataclass(frozen=True)
class Vote:
    vote_id: str
    type: str
    tab: str
    models: tuple[ModelRef, ...]  # two for battle and side by side, one for direct chat
    tstamp: float  # when the vote was cast (unix seconds)
    turns: int = 1
    revealed: bool = False  # a model's identity was shown before the vote (battle votes then do not count)
    error: bool = False  # an answer ended in an error (the vote does not count)
    voter: str = ""  # salted hash of the session: per-voter caps without storing who
    started: float | None = None  # when the conversation started
    source: str = "web"  # "web", or "fastchat-import"
    over_cap: bool = False  # stored but not rated: its voter had reached the per-day cap when it landed
    conversation: list[Any] | None = field(default=None, compare=False)  # only when the operator keeps text

    def counts(self) -> bool:
        """Whether the vote moves the counters (FastChat's filters: no revealed battle, no error; and
        not over its voter's cap)."""
        if self.error or self.over_cap:
            return False
        return not (self.tab == "battle" and self.revealed)

    def day(self) -> str:
        return datetime.fromtimestamp(self.tstamp, UTC).date().isoformat()

    def as_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["models"] = [asdict(m) for m in self.models]
        if self.conversation is None:
            del doc["conversation"]
        return doc


def voter_key(session_id: str, salt: str) -> str:
    return hmac.new(salt.encode(), session_id.encode(), hashlib.sha256).hexdigest()[:24]


def _text(doc: Mapping[str, Any], key: str, required: bool = False, limit: int = MAX_FIELD) -> str:
    value = doc.get(key, "")
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ValueError(f"{key}: must be a non-empty string" if required else f"{key}: must be a string")
    if len(value) > limit:
        raise ValueError(f"{key}: longer than {limit} characters")
    return value


def _model_ref(doc: Any) -> ModelRef:
    if not isinstance(doc, dict):
        raise ValueError("models: each model must be an object")
    version = doc.get("version")
    if version is not None and (not isinstance(version, int) or isinstance(version, bool)):
        raise ValueError("models.version: must be an integer or null")
    return ModelRef(
        _text(doc, "name", required=True),
        version,
        _text(doc, "endpoint"),
        _text(doc, "spec_hash"),
        _text(doc, "conv_template"),
        _text(doc, "variant"),
    )


def _number(doc: Mapping[str, Any], key: str, optional: bool = False) -> float | None:
    value = doc.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{key}: must be a number")
    return float(value)


def parse_vote(doc: Any) -> Vote | str:
    """A vote from its JSON form, or why not (total: never raises)."""
    if not isinstance(doc, dict):
        return "vote: must be a JSON object"
    try:
        vote_type, tab = _text(doc, "type", required=True), _text(doc, "tab", required=True)
        if vote_type not in VOTE_TYPES:
            raise ValueError(f"type: must be one of {', '.join(VOTE_TYPES)}")
        if tab not in TABS:
            raise ValueError(f"tab: must be one of {', '.join(TABS)}")
        raw_models = doc.get("models")
        if not isinstance(raw_models, list):
            raise ValueError("models: must be a list")
        models = tuple(_model_ref(m) for m in raw_models)
        wanted = 1 if tab == "direct" else 2
        if len(models) != wanted or (vote_type in PAIR_TYPES) != (wanted == 2):
            raise ValueError(f"models: a {vote_type} in {tab} names {wanted} model(s), not {len(models)}")
        turns = doc.get("turns", 1)
        if not isinstance(turns, int) or isinstance(turns, bool) or not 0 <= turns <= 100_000:
            raise ValueError("turns: must be an integer from 0 to 100000")
        conversation = doc.get("conversation")
        if conversation is not None and (
            not isinstance(conversation, list) or len(json.dumps(conversation)) > 4 * MAX_TEXT
        ):
            raise ValueError(f"conversation: must be a list of at most {4 * MAX_TEXT} characters as JSON")
        tstamp = _number(doc, "tstamp")
        assert tstamp is not None
        return Vote(
            vote_id=_text(doc, "vote_id", required=True, limit=MAX_ID),
            type=vote_type,
            tab=tab,
            models=models,
            tstamp=tstamp,
            turns=turns,
            revealed=bool(doc.get("revealed", False)),
            error=bool(doc.get("error", False)),
            voter=_text(doc, "voter"),
            started=_number(doc, "started", optional=True),
            source=_text(doc, "source") or "web",
            over_cap=bool(doc.get("over_cap", False)),
            conversation=conversation,
        )
    except ValueError as exc:
        return f"vote {str(doc.get('vote_id', '?'))[:MAX_ID]}: {exc}"


# --- Counters ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Counter:
    """One counter a vote increments: bucket (tab|view|day), the pair (JSON list of keys) and the type."""

    bucket: str
    pair: str
    type: str


def bucket(tab: str, view: str, day: str = ALL_TIME) -> str:
    return f"{tab}|{view}|{day}"


def counters(vote: Vote) -> list[Counter]:
    """The counters a vote moves (none when it does not count)."""
    if not vote.counts():
        return []
    out = []
    for view in VIEWS:
        pair = json.dumps([m.key(view) for m in vote.models], ensure_ascii=False)
        for day in (ALL_TIME, vote.day()):
            out.append(Counter(bucket(vote.tab, view, day), pair, vote.type))
    return out


def voter_counter(vote: Vote) -> Counter | None:
    """The per-voter, per-day counter a rated vote takes a place in, under the cap; None when the vote is
    not rated or has no voter (imports): those are never capped."""
    if not vote.counts() or not vote.voter:
        return None
    return Counter(bucket(VOTERS_BUCKET, "day", vote.day()), vote.voter, "votes")


def over_cap(vote: Vote) -> Vote:
    """The vote as stored when its voter is over the cap: kept, flagged, moving no rating counter."""
    return replace(vote, over_cap=True)


def days_since(since: date, today: date) -> Iterator[str]:
    for ordinal in range(since.toordinal(), today.toordinal() + 1):
        yield date.fromordinal(ordinal).isoformat()


CountRows = Iterable[
    tuple[str, Mapping[str, int]]
]  # (pair JSON, {vote type: count}) from one or more buckets


def pair_totals(rows: CountRows) -> dict[tuple[str, ...], dict[str, int]]:
    """Counter rows (possibly from several day buckets) summed per pair (one model: direct chat)."""
    totals: dict[tuple[str, ...], dict[str, int]] = {}
    for pair, values in rows:
        try:
            keys = json.loads(pair)
        except ValueError:
            continue
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            continue
        cell = totals.setdefault(tuple(keys), {})
        for vote_type, count in values.items():
            if vote_type in VOTE_TYPES:
                cell[vote_type] = cell.get(vote_type, 0) + int(count)
    return totals


def outcomes(totals: Mapping[tuple[str, ...], Mapping[str, int]]) -> Outcomes:
    """Bradley-Terry's input from summed pair counters: left wins, right wins, ties (both bad: a tie)."""
    return {
        (pair[0], pair[1]): PairOutcome(
            c.get("leftvote", 0), c.get("rightvote", 0), c.get("tievote", 0) + c.get("bothbad_vote", 0)
        )
        for pair, c in totals.items()
        if len(pair) == 2
    }


# --- FastChat's conversation log --------------------------------------------------------------------
# FastChat's arena tabs append one JSON line per vote: {"tstamp", "type", "models": [selector_a,
# selector_b], "states": [state_a.dict(), state_b.dict()], "ip"}, where a state is its conversation's
# dict plus "conv_id" and "model_name". The battle tab's selectors are "" while the names are hidden
# (FastChat's clean_battle_data counts only those as anonymous), "### Model A: name" once revealed; the
# side-by-side tab's are the names.
# Direct chat writes {"tstamp", "type": "upvote"|"downvote"|"flag", "model", "state", "ip"}.
ERROR_MARK = "(error_code:"  # FastChat appends it to an answer that ended in an error


def _answered_with_error(state: Mapping[str, Any]) -> bool:
    messages = state.get("messages")
    if not isinstance(messages, list) or not messages:
        return False
    last = messages[-1]
    text = last[1] if isinstance(last, list | tuple) and len(last) > 1 else None
    return isinstance(text, str) and ERROR_MARK in text


def _turns(state: Mapping[str, Any]) -> int:
    messages = state.get("messages")
    offset = state.get("offset", 0)
    if not isinstance(messages, list):
        return 1
    start = offset if isinstance(offset, int) and 0 <= offset <= len(messages) else 0
    return max(1, (len(messages) - start) // 2)


def fastchat_vote(line: str) -> Vote | str | None:
    """A vote from one FastChat conversation-log line, or why not; None for lines that are not votes.

    The vote id is derived from the line's content, so importing the same log twice counts each vote once.
    """
    try:
        doc = json.loads(line)
    except ValueError:
        return "not JSON"
    if not isinstance(doc, dict) or doc.get("type") not in VOTE_TYPES:
        return None
    if doc["type"] in SINGLE_TYPES:
        state = doc.get("state")
        states: list[Any] = [state]
        public: list[Any] = [doc.get("model", "")]
    else:
        raw_states, raw_public = doc.get("states"), doc.get("models")
        states = raw_states if isinstance(raw_states, list) else []
        public = raw_public if isinstance(raw_public, list) else []
    if len(states) != (1 if doc["type"] in SINGLE_TYPES else 2) or not all(
        isinstance(s, dict) for s in states
    ):
        return f"a {doc['type']} line without its conversation state(s)"
    names = [s.get("model_name") or "" for s in states]
    if not all(isinstance(n, str) and n for n in names):
        return f"a {doc['type']} line without model names"
    anonymous = all(p == "" for p in public)
    # After a battle vote FastChat shows "### Model A: name": a later vote in that battle is a revealed one.
    revealed = not anonymous and all(isinstance(p, str) and p.startswith("### Model ") for p in public)
    tab = "battle" if anonymous or revealed else "side_by_side"
    if doc["type"] in SINGLE_TYPES:
        tab = "direct"
    return parse_vote(
        {
            "vote_id": "fastchat-" + hashlib.sha256(line.strip().encode()).hexdigest()[:40],
            "type": doc["type"],
            "tab": tab,
            "models": [{"name": n} for n in names],
            "tstamp": doc.get("tstamp"),
            "turns": _turns(states[0]),
            "error": any(_answered_with_error(s) for s in states),
            "revealed": revealed,
            "source": "fastchat-import",
        }
    )
