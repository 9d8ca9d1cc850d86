"""Vote records: validation, which counters a vote moves, FastChat log lines, and pair totals."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arena.ratings import PairOutcome
from arena.votes import (
    ModelRef,
    Vote,
    counters,
    fastchat_vote,
    outcomes,
    pair_totals,
    parse_vote,
    voter_counter,
    voter_key,
)

A = ModelRef("alpha", 4, "ep-alpha", "hash-a", "raw")
B = ModelRef("bravo", 4, "ep-bravo", "hash-b", "vicuna_v1.1")


def battle(**changes: Any) -> Vote:
    fields: dict[str, Any] = {
        "vote_id": "v1",
        "type": "leftvote",
        "tab": "battle",
        "models": (A, B),
        "tstamp": 1_764_460_800.0,
    }
    fields.update(changes)
    return Vote(**fields)


def test_a_vote_round_trips_through_json() -> None:
    """as_json() -> parse_vote() gives the same vote (the spool and export format)."""
    vote = battle(turns=3, voter="k", started=1_764_460_000.0)
    assert parse_vote(json.loads(json.dumps(vote.as_json()))) == vote


def test_no_conversation_text_unless_kept() -> None:
    """By default a vote carries no prompt or answer text."""
    assert "conversation" not in battle().as_json()
    kept = battle(conversation=[["user", "hi"], ["assistant", "hello"]]).as_json()
    assert kept["conversation"] == [["user", "hi"], ["assistant", "hello"]]


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"type": "leftvote"}, "tab"),
        (
            {"vote_id": "x", "type": "like", "tab": "battle", "models": [], "tstamp": 1},
            "type: must be one of",
        ),
        (
            {
                "vote_id": "x",
                "type": "upvote",
                "tab": "battle",
                "models": [{"name": "a"}, {"name": "b"}],
                "tstamp": 1,
            },
            "names 2 model",
        ),
        (
            {
                "vote_id": "x",
                "type": "upvote",
                "tab": "direct",
                "models": [{"name": "a"}, {"name": "b"}],
                "tstamp": 1,
            },
            "names 1 model",
        ),
        (
            {"vote_id": "x", "type": "upvote", "tab": "direct", "models": [{"name": ""}], "tstamp": 1},
            "name: must be",
        ),
        (
            {"vote_id": "x", "type": "upvote", "tab": "direct", "models": [{"name": "a"}], "tstamp": "now"},
            "tstamp",
        ),
        (
            {"vote_id": "x" * 200, "type": "upvote", "tab": "direct", "models": [{"name": "a"}], "tstamp": 1},
            "longer than",
        ),
        ([], "must be a JSON object"),
    ],
)
def test_invalid_votes_say_why(doc: Any, why: str) -> None:
    """A malformed vote is a readable reason, not an exception."""
    problem = parse_vote(doc)
    assert isinstance(problem, str)
    assert why in problem


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["vote_id", "type", "tab", "models", "tstamp", "turns", "started"]),
        st.none()
        | st.integers()
        | st.text(max_size=5)
        | st.lists(st.dictionaries(st.text(max_size=4), st.text(max_size=4)), max_size=3),
    )
)
def test_parse_vote_is_total(doc: dict[str, Any]) -> None:
    """Any JSON-ish input gives a vote or a reason, never an exception."""
    assert isinstance(parse_vote(doc), Vote | str)


def test_counters_by_view_and_day() -> None:
    """A counted vote moves four counters: by name and by name@hash, all-time and its UTC day."""
    got = {(c.bucket, c.pair, c.type) for c in counters(battle())}
    assert got == {
        ("battle|name|all", '["alpha", "bravo"]', "leftvote"),
        ("battle|name|2025-11-30", '["alpha", "bravo"]', "leftvote"),
        ("battle|version|all", '["alpha@hash-a", "bravo@hash-b"]', "leftvote"),
        ("battle|version|2025-11-30", '["alpha@hash-a", "bravo@hash-b"]', "leftvote"),
    }


def test_revealed_battle_votes_and_errors_do_not_count() -> None:
    """FastChat's filters: a battle vote cast after a model's name was revealed, or on an error, moves no
    counter (it is still stored); side-by-side votes are named by nature and count."""
    assert counters(battle(revealed=True)) == []
    assert counters(battle(error=True)) == []
    assert counters(battle(tab="side_by_side", revealed=True)) != []


def test_an_over_cap_vote_keeps_its_flag_and_moves_nothing() -> None:
    """`over_cap` survives the JSON round trip (spool, export); such a vote moves no counter, and only a
    rated vote with a voter takes a place under the voter's daily cap."""
    flagged = battle(voter="k", over_cap=True)
    assert parse_vote(json.loads(json.dumps(flagged.as_json()))) == flagged
    assert counters(flagged) == []
    assert voter_counter(flagged) is None
    assert voter_counter(battle(voter="k", error=True)) is None
    assert voter_counter(battle()) is None  # imports carry no voter
    place = voter_counter(battle(voter="k"))
    assert place is not None
    assert (place.bucket, place.pair) == ("voters|day|2025-11-30", "k")


def test_totals_and_outcomes() -> None:
    """Day buckets sum per pair; both-bad counts as a tie; direct-chat rows (one model) are not pairs."""
    rows = [
        ('["a", "b"]', {"leftvote": 2, "tievote": 1}),
        ('["a", "b"]', {"leftvote": 1, "bothbad_vote": 2, "rightvote": 4}),
        ('["a"]', {"upvote": 3}),
        ("not json", {"leftvote": 9}),
    ]
    totals = pair_totals(rows)
    assert totals[("a", "b")] == {"leftvote": 3, "tievote": 1, "bothbad_vote": 2, "rightvote": 4}
    assert totals[("a",)] == {"upvote": 3}
    assert outcomes(totals) == {("a", "b"): PairOutcome(3, 4, 3)}


def test_voter_key_is_a_salted_hash() -> None:
    """The same session gives the same key under one salt, another under another; never the session."""
    assert voter_key("session-1", "salt") == voter_key("session-1", "salt")
    assert voter_key("session-1", "salt") != voter_key("session-1", "pepper")
    assert "session-1" not in voter_key("session-1", "salt")


def fastchat_state(model: str, answer: str = "hello") -> dict[str, Any]:
    return {
        "template_name": "vicuna_v1.1",
        "system_message": "",
        "roles": ["USER", "ASSISTANT"],
        "messages": [["USER", "hi"], ["ASSISTANT", answer], ["USER", "more"], ["ASSISTANT", answer]],
        "offset": 0,
        "conv_id": "c1",
        "model_name": model,
    }


def fastchat_line(vote_type: str, public: list[str], **extra: Any) -> str:
    doc = {
        "tstamp": 1764460800.5,
        "type": vote_type,
        "models": public,
        "states": [fastchat_state("alpha"), fastchat_state("bravo")],
        "ip": "10.0.0.1",
        **extra,
    }
    return json.dumps(doc)


def test_fastchat_anonymous_battle_line() -> None:
    """An anonymous battle line (names hidden: models ["", ""]) is a counted battle vote, names from states."""
    vote = fastchat_vote(fastchat_line("leftvote", ["", ""]))
    assert isinstance(vote, Vote)
    assert (vote.tab, vote.type, vote.turns, vote.error) == ("battle", "leftvote", 2, False)
    assert [m.name for m in vote.models] == ["alpha", "bravo"]
    assert vote.counts()
    assert "10.0.0.1" not in json.dumps(vote.as_json())


def test_fastchat_named_line_direct_line_and_errors() -> None:
    """Named selectors mean side by side; direct chat's lines carry one model; an error answer is marked."""
    named = fastchat_vote(fastchat_line("tievote", ["alpha", "bravo"]))
    assert isinstance(named, Vote)
    late = fastchat_vote(fastchat_line("leftvote", ["### Model A: alpha", "### Model B: bravo"]))
    assert isinstance(late, Vote)
    assert (late.tab, late.revealed, late.counts()) == ("battle", True, False)
    assert named.tab == "side_by_side"
    direct = fastchat_vote(
        json.dumps({"tstamp": 1.0, "type": "upvote", "model": "alpha", "state": fastchat_state("alpha")})
    )
    assert isinstance(direct, Vote)
    assert (direct.tab, [m.name for m in direct.models]) == ("direct", ["alpha"])
    broken = json.loads(fastchat_line("rightvote", ["", ""]))
    broken["states"][1] = fastchat_state("bravo", "**NETWORK ERROR** (error_code: 50004)")
    vote = fastchat_vote(json.dumps(broken))
    assert isinstance(vote, Vote)
    assert vote.error
    assert not vote.counts()


def test_fastchat_lines_that_are_not_votes_or_are_broken() -> None:
    """Chat lines are skipped (None); broken vote lines say why."""
    assert fastchat_vote(json.dumps({"type": "chat", "model": "alpha"})) is None
    assert fastchat_vote("{") == "not JSON"
    assert "without" in str(fastchat_vote(json.dumps({"type": "leftvote", "models": ["", ""]})))


def test_fastchat_vote_id_follows_the_line() -> None:
    """The same line gives the same id (import is idempotent); another line another id."""
    one = fastchat_vote(fastchat_line("leftvote", ["", ""]))
    again = fastchat_vote(fastchat_line("leftvote", ["", ""]))
    other = fastchat_vote(fastchat_line("leftvote", ["", ""], tstamp=2.0))
    assert isinstance(one, Vote)
    assert isinstance(again, Vote)
    assert isinstance(other, Vote)
    assert one.vote_id == again.vote_id != other.vote_id


def test_day_is_utc() -> None:
    """Day buckets are UTC days."""
    assert battle(tstamp=1_764_460_799.0).day() == date(2025, 11, 29).isoformat()
