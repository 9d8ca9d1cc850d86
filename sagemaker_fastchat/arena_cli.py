"""`sagemaker-fastchat leaderboard` and `sagemaker-fastchat votes export|import`: the arena's votes store.

The leaderboard reads only the per-pair counters (never every vote); export reads the votes table;
import accepts FastChat's own conversation-log lines (and our export's lines), idempotently.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import boto3

from arena.board import board
from arena.ratings import DEFAULT_ROUNDS, MAX_ROUNDS
from arena.votes import Vote, fastchat_vote, parse_vote
from contract.items import InputError
from sagemaker_fastchat.settings import ArenaSettings, add_flags
from stores.votes import DynamoVotesStore, VotesStore, read_totals

MAX_PROBLEMS_SHOWN = 20


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def _tables(p: argparse.ArgumentParser) -> None:
    add_flags(p, ArenaSettings, only=("votes_table", "counts_table"))  # args.votes_table: settings.resolve


def register(sub: Any) -> None:
    lb = sub.add_parser("leaderboard", help="the arena's ratings (Bradley-Terry, 95%% bootstrap intervals)")
    lb.add_argument("--json", action="store_true", help="print the leaderboard as JSON")
    lb.add_argument("--by", choices=["name", "version"], default="name", help="one row per name or spec hash")
    lb.add_argument("--since", type=_date, metavar="DATE", help="only votes cast on or after DATE (UTC)")
    add_flags(lb, ArenaSettings)
    lb.add_argument(
        "--rounds", type=int, default=DEFAULT_ROUNDS, help=f"bootstrap rounds (at most {MAX_ROUNDS})"
    )
    lb.set_defaults(handler=cmd_leaderboard)

    votes = sub.add_parser("votes", help="export or import arena votes")
    vsub = votes.add_subparsers(dest="votes_command", required=True)
    export = vsub.add_parser("export", help="print votes as JSON lines, oldest first")
    export.add_argument("--since", type=_date, metavar="DATE", help="only votes cast on or after DATE (UTC)")
    _tables(export)
    export.set_defaults(handler=cmd_export)
    imp = vsub.add_parser(
        "import", help="import FastChat conversation-log vote lines (or exported lines); idempotent"
    )
    imp.add_argument("file", help="a FastChat <date>-conv.json log, or `votes export` output; - for stdin")
    _tables(imp)
    imp.set_defaults(handler=cmd_import)


def _store(args: argparse.Namespace) -> VotesStore:
    return DynamoVotesStore(boto3.client("dynamodb"), args.votes_table, args.counts_table)


def leaderboard_doc(
    store: VotesStore, by: str, since: date | None, min_votes: int, rounds: int = DEFAULT_ROUNDS
) -> dict[str, Any]:
    doc = board(
        read_totals(store, "battle", by, since),
        read_totals(store, "side_by_side", by, since),
        read_totals(store, "direct", by, since),
        by=by,
        min_votes=min_votes,
        rounds=rounds,
    )
    return {**doc, "since": since.isoformat() if since else None}


def cmd_leaderboard(args: argparse.Namespace) -> int:
    if not 0 <= args.rounds <= MAX_ROUNDS or args.min_votes < 0:
        raise InputError(f"--rounds must be 0..{MAX_ROUNDS} and --min-votes at least 0")
    try:
        doc = leaderboard_doc(_store(args), args.by, args.since, args.min_votes, args.rounds)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.json:
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    rows = doc["models"]
    window = f" since {doc['since']}" if doc["since"] else ""
    print(
        f"{doc['battle_votes']} anonymous battle votes{window}; "
        f"provisional (*) below {doc['min_votes']} votes"
    )
    if not rows:
        return 0
    width = max(len(r["model"] + (f"@{r['version'][:12]}" if args.by == "version" else "")) for r in rows)
    print(f"{'RANK':>4}  {'MODEL':<{width}}  {'RATING':>7}  {'95% CI':>15}  VOTES")
    for r in rows:
        label = r["model"] + (f"@{r['version'][:12]}" if args.by == "version" else "")
        ci = f"{r['ci_lower']:.0f}..{r['ci_upper']:.0f}"
        star = "*" if r["provisional"] else ""
        print(f"{r['rank']:>4}  {label:<{width}}  {r['rating']:7.1f}  {ci:>15}  {r['votes']}{star}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    for vote in _store(args).votes(args.since):
        print(json.dumps(vote.as_json(), ensure_ascii=False))
    return 0


def _line_vote(line: str) -> Vote | str | None:
    """A FastChat log line, or a line of our own export (it has a vote_id and a tab)."""
    try:
        doc = json.loads(line)
    except ValueError:
        return "not JSON"
    if isinstance(doc, dict) and "vote_id" in doc and "tab" in doc:
        return parse_vote(doc)
    return fastchat_vote(line)


def cmd_import(args: argparse.Namespace) -> int:
    store = _store(args)
    tally: Counter[str] = Counter()
    problems: list[str] = []
    try:
        # Bytes, decoded line by line: a line that is not UTF-8 is refused on its own (it was a traceback).
        stream = sys.stdin.buffer if args.file == "-" else Path(args.file).open("rb")  # noqa: SIM115
    except OSError as exc:
        raise InputError(f"{args.file}: cannot read ({exc.strerror})") from None
    with stream:
        for number, raw in enumerate(stream, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                tally["refused"] += 1
                problems.append(f"{args.file}:{number}: not UTF-8 text")
                continue
            if not line.strip():
                continue
            vote = _line_vote(line)
            if vote is None:
                tally["not votes"] += 1
            elif isinstance(vote, str):
                tally["refused"] += 1
                problems.append(f"{args.file}:{number}: {vote}")
            else:
                tally["imported" if store.put(vote) else "already present"] += 1
    for problem in problems[:MAX_PROBLEMS_SHOWN]:
        print(problem, file=sys.stderr)
    if len(problems) > MAX_PROBLEMS_SHOWN:
        print(f"... and {len(problems) - MAX_PROBLEMS_SHOWN} more", file=sys.stderr)
    print(
        f"imported {tally['imported']} vote(s); {tally['already present']} already present; "
        f"{tally['not votes']} line(s) not votes; {tally['refused']} refused"
    )
    return 0 if not problems else 1
