"""`sagemaker-fastchat leaderboard` and `votes export|import` against moto (in-process `cli.main`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from arena.ratings import leaderboard
from arena.votes import ModelRef, Vote
from sagemaker_fastchat import cli
from stores.votes import DEFAULT_COUNTS_TABLE, DEFAULT_VOTES_TABLE, DynamoVotesStore, create_tables
from tests.unit.test_ratings import TRUE, battles, counts_of
from tests.unit.test_votes import fastchat_state

WINNER_TO_TYPE = {
    "model_a": "leftvote",
    "model_b": "rightvote",
    "tie": "tievote",
    "tie (bothbad)": "bothbad_vote",
}


@pytest.fixture
def tables() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_tables(client, DEFAULT_VOTES_TABLE, DEFAULT_COUNTS_TABLE)
        yield client


def fastchat_log(rows: list[tuple[str, str, str]], path: Path) -> None:
    """A FastChat conversation log as its arena writes it: chat lines and anonymous vote lines."""
    with path.open("w") as f:
        for n, (a, b, winner) in enumerate(rows):
            f.write(json.dumps({"tstamp": 1_764_460_800 + n, "type": "chat", "model": a, "state": {}}) + "\n")
            vote = {
                "tstamp": 1_764_460_800.5 + n,
                "type": WINNER_TO_TYPE[winner],
                "models": ["", ""],
                "states": [fastchat_state(a), fastchat_state(b)],
                "ip": "10.1.2.3",
            }
            f.write(json.dumps(vote) + "\n")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_board(doc: dict[str, Any], rows: list[tuple[str, str, str]]) -> None:
    """`leaderboard --json --min-votes 10` is the reference fit of exactly these battles."""
    expected = leaderboard(counts_of(rows), min_votes=10)
    assert [r["model"] for r in doc["models"]] == [r.model for r in expected]
    for got, want in zip(doc["models"], expected, strict=True):
        assert got["rating"] == round(want.rating, 1)
        assert (got["ci_lower"], got["ci_upper"]) == (round(want.ci_lower, 1), round(want.ci_upper, 1))
        assert (got["votes"], got["rank"]) == (want.votes, want.rank)


def test_importing_a_fastchat_log_gives_the_leaderboard_of_its_votes(
    tables: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """FastChat's own log lines imported, the leaderboard is the one its battles give directly; importing
    again changes nothing."""
    rows = battles(TRUE, 120, seed=11)
    log = tmp_path / "2025-11-30-conv.json"
    fastchat_log(rows, log)
    code, out, _ = run(capsys, "votes", "import", str(log))
    assert code == 0
    assert out.startswith("imported 120 vote(s); 0 already present; 120 line(s) not votes")
    code, out, _ = run(capsys, "votes", "import", str(log))
    assert out.startswith("imported 0 vote(s); 120 already present")

    code, out, _ = run(capsys, "leaderboard", "--json", "--min-votes", "10")
    assert code == 0
    doc = json.loads(out)
    assert_board(doc, rows)
    assert doc["battle_votes"] == 120
    assert "10.1.2.3" not in json.dumps([v.as_json() for v in DynamoVotesStore(tables).votes()])


def test_export_then_import_round_trips(
    tables: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`votes export` lines import back as the same votes (already present: nothing doubles)."""
    log = tmp_path / "conv.json"
    fastchat_log(battles(TRUE, 20, seed=3), log)
    run(capsys, "votes", "import", str(log))
    code, exported, _ = run(capsys, "votes", "export")
    assert code == 0
    lines = exported.splitlines()
    assert len(lines) == 20
    assert all(json.loads(line)["models"][0]["name"] in TRUE for line in lines)
    dump = tmp_path / "export.jsonl"
    dump.write_text(exported)
    _, out, _ = run(capsys, "votes", "import", str(dump))
    assert out.startswith("imported 0 vote(s); 20 already present")
    _, since, _ = run(capsys, "votes", "export", "--since", "2030-01-01")
    assert since == ""


def test_leaderboard_text_by_version_and_bad_input(
    tables: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The text view lists ranks; --by version shows name@hash rows; a bad line or date is refused."""
    log = tmp_path / "conv.json"
    fastchat_log(battles(TRUE, 30, seed=4), log)
    log.write_text(log.read_text() + "{broken\n")
    code, _, err = run(capsys, "votes", "import", str(log))
    assert code == 1
    assert "conv.json:61: not JSON" in err
    code, out, _ = run(capsys, "leaderboard")
    assert code == 0
    assert "30 anonymous battle votes" in out
    assert "RANK" in out
    code, out, _ = run(capsys, "leaderboard", "--json", "--by", "version")
    assert {r["version"] for r in json.loads(out)["models"]} == {""}  # FastChat logs carry no spec hash
    with pytest.raises(SystemExit):
        cli.main(["leaderboard", "--since", "yesterday"])


def test_over_cap_votes_export_and_import_flagged_and_never_rated(
    tables: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A voter stuffing the ballot past the daily cap: the extra votes are stored and exported flagged
    `over_cap`, import back with the flag, and the leaderboard, before and after the round trip, is the
    fit of the rated votes alone."""
    rows = battles(TRUE, 80, seed=7)
    stuffed = ("foxtrot", "alpha", "model_a")
    votes = [
        Vote(
            f"w{n}",
            WINNER_TO_TYPE[w],
            "battle",
            (ModelRef(a), ModelRef(b)),
            1_764_460_800.0 + n,
            voter=f"u{n}",
        )
        for n, (a, b, w) in enumerate(rows)
    ]
    votes += [
        Vote(
            f"s{n}",
            "leftvote",
            "battle",
            (ModelRef("foxtrot"), ModelRef("alpha")),
            1_764_460_900.0 + n,
            voter="x",
        )
        for n in range(30)
    ]
    store = DynamoVotesStore(tables, max_per_voter=3)
    assert all(store.put(v) for v in votes)
    capsys.readouterr()  # the store's own log lines
    rated = rows + [stuffed] * 3

    _, out, _ = run(capsys, "leaderboard", "--json", "--min-votes", "10")
    assert_board(json.loads(out), rated)
    _, exported, _ = run(capsys, "votes", "export")
    flags = [json.loads(line)["over_cap"] for line in exported.splitlines()]
    assert (len(flags), sum(flags)) == (110, 27)

    create_tables(tables, "votes-copy", "counts-copy")
    copy = ["--votes-table", "votes-copy", "--counts-table", "counts-copy"]
    dump = tmp_path / "export.jsonl"
    dump.write_text(exported)
    _, out, _ = run(capsys, "votes", "import", str(dump), *copy)
    assert out.startswith("imported 110 vote(s)")
    _, again, _ = run(capsys, "votes", "export", *copy)
    assert again == exported
    _, out, _ = run(capsys, "leaderboard", "--json", "--min-votes", "10", *copy)
    assert_board(json.loads(out), rated)


def test_a_negative_cap_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """`web --max-votes-per-voter -1` is refused before the UI starts (0 means no cap)."""
    code, _, err = run(capsys, "web", "--max-votes-per-voter", "-1")
    assert code != 0
    assert "--max-votes-per-voter: must be 0 (no cap) or more" in err


def test_a_spool_file_that_cannot_be_written_stops_the_web_ui(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The spool's folder exists but the file cannot be written (here: the path is a folder): refused at
    start, not discovered at the first vote (which was then lost with only a log line)."""
    (tmp_path / "spool.jsonl").mkdir()
    monkeypatch.setenv("ARENA_VOTE_SPOOL", str(tmp_path / "spool.jsonl"))
    monkeypatch.setenv("WORKER_URL", "http://127.0.0.1:9")
    code, _, err = run(capfd, "web", "--port", "0")
    assert code == 1
    assert f"error: ARENA_VOTE_SPOOL: {tmp_path / 'spool.jsonl'}: cannot be used" in err


@pytest.mark.parametrize("variable", ["ARENA_VOTE_SPOOL_DIR", "ARENA_VOTE_SPOOL"])
def test_a_spool_that_cannot_be_written_stops_the_web_ui(
    variable: str, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spool path that cannot be created (here: under a regular file) would lose every vote: `web`
    refuses to start with one line naming the variable, instead of a traceback."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(variable, str(blocker / "spool"))
    monkeypatch.setenv("WORKER_URL", "http://127.0.0.1:9")  # nothing there: the page's lookups just fail
    code, _, err = run(capfd, "web", "--port", "0")  # fd-level: FastChat's import swaps sys.stderr
    assert code == 1
    assert f"error: {variable}: {blocker / 'spool'}: cannot be used" in err


def test_a_line_that_is_not_utf8_is_refused_alone(
    tables: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A byte that is not UTF-8 spoils only its own line (it was a UnicodeDecodeError traceback): the
    votes around it are imported, the line is refused with its number, exit 1."""
    log = tmp_path / "conv.json"
    fastchat_log(battles(TRUE, 10, seed=5), log)
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([*lines[:4], b'\xff\xfe{"type": "leftvote"}\n', *lines[4:]]))
    code, out, err = run(capsys, "votes", "import", str(log))
    assert code == 1
    assert err.strip() == f"{log}:5: not UTF-8 text"
    assert out.startswith("imported 10 vote(s); 0 already present; 10 line(s) not votes; 1 refused")
