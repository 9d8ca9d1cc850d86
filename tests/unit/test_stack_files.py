"""Each local stack keeps its votes spool and traces file in its own state folder, so two stacks on one
machine never replay votes into each other's tables nor show each other's traces; `traces` as the README
runs it finds the default stack's file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sagemaker_fastchat.cli import build_parser
from sagemaker_fastchat.local_stack import (
    Ports,
    banner,
    fresh_refusal,
    legacy_spool_warning,
    stack_env,
    start_stack,
)
from sagemaker_fastchat.settings import LocalStackSettings, TracesSettings, WebSettings, settings_from
from sagemaker_fastchat.supervisor import Supervisor

PORTS = Ports(1, 2, 3, 4, 5, 6, 7)


@pytest.fixture(autouse=True)
def _xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("SFC_STATE_DIR", "XRAY_TRACES_FILE", "ARENA_VOTE_SPOOL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))


def up(*argv: str) -> LocalStackSettings:
    return settings_from(build_parser().parse_args(["up", *argv]), LocalStackSettings)


def traces_file(*argv: str) -> Path:
    """The file `sagemaker-fastchat traces ARGV` reads."""
    return settings_from(build_parser().parse_args(["traces", *argv]), TracesSettings).traces_file()


def children_files(settings: LocalStackSettings, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """The spool the stack's web process uses and the file its collector writes, from their own settings
    built from the environment `up` gives them."""
    with monkeypatch.context() as m:
        for name, value in stack_env(settings, PORTS).items():
            m.setenv(name, value)
        collector = build_parser().parse_args(["xray-collector"])
        return Path(WebSettings().vote_spool), settings_from(collector, TracesSettings).traces_file()


def test_two_stacks_have_their_own_spool_and_traces(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = tmp_path / "xdg" / "sagemaker-fastchat"
    second = tmp_path / "second-stack"
    monkeypatch.setenv("ARENA_VOTE_SPOOL", str(tmp_path / "shared.jsonl"))  # up's own: not the children's
    first_spool, first_traces = children_files(up(), monkeypatch)
    second_spool, second_traces = children_files(up("--state-dir", str(second)), monkeypatch)

    assert (first_spool, first_traces) == (default / "votes-spool.jsonl", default / "traces.jsonl")
    assert (second_spool, second_traces) == (second / "votes-spool.jsonl", second / "traces.jsonl")
    # `sagemaker-fastchat traces` verbatim reads the default stack's; the second stack's by its folder.
    assert traces_file() == first_traces
    assert traces_file("--state-dir", str(second)) == second_traces
    monkeypatch.setenv("SFC_STATE_DIR", str(second))
    assert traces_file() == second_traces
    assert traces_file("--file", str(tmp_path / "t.jsonl")) == tmp_path / "t.jsonl"


def test_the_banner_gives_each_stack_its_traces_command(tmp_path: Path) -> None:
    default = banner(up(), PORTS, web=True)
    assert "traces                  sagemaker-fastchat traces --last 3   (in " in default
    second = banner(up("--state-dir", str(tmp_path / "two")), PORTS, web=True)
    assert f"sagemaker-fastchat traces --last 3 --state-dir {tmp_path / 'two'}   (in " in second


def test_fresh_refuses_while_votes_wait_in_the_spool_and_keeps_them(tmp_path: Path) -> None:
    """A spool holds votes the table has not got: `up --fresh` neither drops them nor replays them into
    the fresh tables; it says so and starts nothing, and the folder is untouched."""
    folder = tmp_path / "state"
    folder.mkdir()
    spool = folder / "votes-spool.jsonl"
    spooled = "".join(json.dumps({"vote_id": f"v{i}"}) + "\n" for i in range(2))
    spool.write_text(spooled)
    (folder / "dynamodb.json").write_text("{}")
    args = build_parser().parse_args(["up", "--fresh", "--state-dir", str(folder)])
    sup = Supervisor()

    with pytest.raises(SystemExit) as stopped:
        start_stack(args, sup)

    message = str(stopped.value.code)
    assert message.startswith(f"error: --fresh: {spool} holds 2 vote(s) not yet written"), message
    assert "without --fresh" in message
    assert spool.read_text() == spooled
    assert (folder / "dynamodb.json").read_text() == "{}"
    assert sup.children == {}  # nothing started
    spool.write_text("")  # every vote stored: the recorder leaves an empty spool
    assert fresh_refusal(folder) is None


def test_votes_left_at_the_old_shared_spool_are_named_not_replayed(tmp_path: Path) -> None:
    legacy = tmp_path / "cache" / "votes-spool.jsonl"
    assert legacy_spool_warning(legacy, tmp_path / "state") is None  # no file
    legacy.parent.mkdir()
    legacy.write_text('{"vote_id": "v1"}\n\n')
    warning = legacy_spool_warning(legacy, tmp_path / "state")
    assert warning == (
        f"warning: {legacy} holds 1 vote(s) not yet written (spooled by an earlier version); this stack's "
        f"spool is {tmp_path / 'state' / 'votes-spool.jsonl'}: move the file there (while the stack is "
        "stopped) for this stack to write them"
    )
