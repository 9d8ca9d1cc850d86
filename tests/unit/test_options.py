"""Every setting is a flag and an environment variable: flag > variable > default."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from sagemaker_fastchat import cli
from sagemaker_fastchat.cli import build_parser
from sagemaker_fastchat.settings import LocalStackSettings, WorkerSettings, settings_from

EXAMPLE = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples" / "tgi.json"


def up(*argv: str) -> LocalStackSettings:
    """`up`'s settings from its command line (as its handler builds them)."""
    return settings_from(build_parser().parse_args(["up", *argv]), LocalStackSettings)


def test_defaults_of_the_local_stack() -> None:
    """The documented local defaults (docs/design.md "Command line")."""
    args = up()
    assert (args.api_port, args.web_port, args.controller_port, args.worker_port) == (
        8000,
        8001,
        21001,
        21002,
    )
    assert (args.moto_port, args.standin_port, args.xray_port) == (5000, 8080, 2000)
    assert (args.region, args.table, args.ssm_prefix) == (
        "us-east-1",
        "sagemaker-fastchat-models",
        "/sagemaker-fastchat",
    )
    assert args.poll_interval == 1.0
    assert args.host == "127.0.0.1"


def test_environment_then_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    """A variable overrides the default, a flag overrides the variable, and types are kept."""
    monkeypatch.setenv("API_PORT", "9000")
    monkeypatch.setenv("POLL_INTERVAL", "2.5")
    monkeypatch.setenv("WORKER_CONCURRENCY", "64")
    args = up()
    assert args.api_port == 9000
    assert args.poll_interval == 2.5
    assert up("--api-port", "9100").api_port == 9100
    worker = settings_from(build_parser().parse_args(["worker"]), WorkerSettings)
    assert worker.limit_concurrency == 64
    flagged = build_parser().parse_args(["worker", "--limit-concurrency", "8"])
    assert settings_from(flagged, WorkerSettings).limit_concurrency == 8


def test_a_bad_variable_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A variable that does not parse stops the command with a `VARIABLE: why` line, not a traceback;
    other commands are not affected."""
    monkeypatch.setenv("WORKER_UNREADY_AFTER", "soon")
    assert cli.main(["worker"]) == cli.EXIT_USAGE
    assert "WORKER_UNREADY_AFTER: " in capsys.readouterr().err
    assert build_parser().parse_args(["api"]).handler is not None


@pytest.mark.parametrize(
    ("variable", "value", "argv"),
    [
        ("WORKER_PORT", "abc", ["up"]),
        ("WORKER_PORT", "abc", ["worker"]),
        ("DEMO_TOKEN_RATE", "fast", ["up"]),
        ("SYNC_ENDPOINT_CHECK", "perhaps", ["up"]),
        ("MOTO_PORT", "abc", ["moto"]),
        ("ARENA_MIN_VOTES", "many", ["leaderboard"]),
        ("API_PROCESSES", "two", ["api"]),
    ],
)
def test_a_bad_variable_breaks_only_its_commands(
    variable: str,
    value: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`error: VARIABLE: why`, one line, exit 2, before the command starts anything; the parser is built
    for every command all the same (variables are read when a command runs), and a command that does not
    use the variable runs."""
    monkeypatch.setenv(variable, value)
    assert cli.main(argv) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [captured.err.strip()], captured.err
    assert captured.err.startswith(f"error: {variable}: "), captured.err
    assert captured.out == ""
    assert cli.main(["config", "validate", str(EXAMPLE)]) == cli.EXIT_OK
    assert "valid: 1 model(s)" in capsys.readouterr().out


def test_state_dir_flag_then_variable_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`up`'s state folder: --state-dir, else $SFC_STATE_DIR, else $XDG_STATE_HOME/sagemaker-fastchat."""
    from sagemaker_fastchat.local_stack import state_dir

    monkeypatch.delenv("SFC_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir(up()) == tmp_path / "xdg" / "sagemaker-fastchat"
    monkeypatch.setenv("SFC_STATE_DIR", str(tmp_path / "env"))
    assert state_dir(up()) == tmp_path / "env"
    assert state_dir(up("--state-dir", str(tmp_path / "flag"))) == tmp_path / "flag"
    assert build_parser().parse_args(["up", "--fresh"]).fresh is True


def test_the_banner_names_the_stand_in_for_its_faults() -> None:
    """The README's rollout walkthrough sends faults to the stand-in "`./dev up` prints its URL"."""
    from sagemaker_fastchat.local_stack import Ports, banner

    text = banner(up("--standin-port", "18105"), Ports(1, 2, 3, 4, 5, 18105, 7), web=True)
    assert "SageMaker stand-in      http://127.0.0.1:18105" in text
    # the exports to paste send DescribeEndpoint there too (`models rollout` checks its candidate)
    assert "AWS_ENDPOINT_URL_SAGEMAKER=http://127.0.0.1:18105" in text


@pytest.mark.parametrize(
    ("variable", "value"), [("API_PORT", "99999"), ("WORKER_PORT", "0"), ("XRAY_PORT", "-1")]
)
def test_a_port_out_of_range_is_one_line_and_exit_2(
    variable: str, value: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A port of `up` outside 1-65535, as a variable or a flag, is refused before anything starts (it was
    an OverflowError traceback from bind()); a process's own port may be 0 (any free port), not 65536."""
    monkeypatch.setenv(variable, value)
    assert cli.main(["up"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith(f"error: {variable}: ")
    monkeypatch.delenv(variable)
    monkeypatch.setenv("WORKER_PORT", "65536")
    assert cli.main(["worker"]) == cli.EXIT_USAGE
    assert capsys.readouterr().err.startswith("error: WORKER_PORT: ")
    monkeypatch.delenv("WORKER_PORT")
    assert cli.main(["up", "--api-port", "70000"]) == cli.EXIT_USAGE
    assert "less than or equal to 65535" in capsys.readouterr().err


def test_a_busy_xray_udp_port_is_found_before_the_stack_starts() -> None:
    """`up` checks the X-Ray collector's UDP port with the TCP ones (a busy one stopped the stack right
    after its banner, with the collector's traceback); the banner names the stand-in's URL."""
    from sagemaker_fastchat.local_stack import Ports, banner, busy_ports

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp, socket.socket() as tcp:
        udp.bind(("127.0.0.1", 0))
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        free = _free_port()
        ports = Ports(free, free, free, tcp.getsockname()[1], free, free, udp.getsockname()[1])
        assert busy_ports("127.0.0.1", ports) == [
            f"worker {ports.worker}",
            f"xray {ports.xray} (UDP)",
        ]
    assert f"SageMaker stand-in      http://127.0.0.1:{free}" in banner(up(), ports, web=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("variable", "value", "argv"),
    [
        ("POLL_INTERVAL", "-1", ["worker"]),  # watchfiles' OverflowError killed the poller thread
        ("POLL_INTERVAL", "nan", ["up"]),
        ("WORKER_CONCURRENCY", "0", ["worker"]),  # ready, and every request waited forever
        ("WORKER_CONCURRENCY", "-5", ["worker"]),  # Semaphore(-5): start-up traceback
        ("HEARTBEAT_INTERVAL", "0", ["worker"]),
        ("API_MAX_N", "0", ["api"]),
        ("API_WORKER_TIMEOUT", "-3", ["api"]),
        ("WEB_CONCURRENCY", "0", ["web"]),
        ("DEMO_TOKEN_RATE", "-20", ["up"]),
    ],
)
def test_numbers_out_of_range_are_refused_before_start(
    variable: str,
    value: str,
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Intervals and timeouts are above 0, counts at least 1, the demo rate at least 0: `error: VARIABLE:
    why`, exit 2, before anything starts; flags keep their types."""
    monkeypatch.setenv(variable, value)
    assert cli.main(argv) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(f"error: {variable}: "), err
    monkeypatch.delenv(variable)
    flagged = settings_from(build_parser().parse_args(["up", "--poll-interval", "0.5"]), LocalStackSettings)
    assert flagged.poll_interval == 0.5
    assert up("--token-rate", "0").token_rate == 0


@pytest.mark.parametrize("last", ["0", "-1", "x"])
def test_traces_last_below_one_is_a_usage_error(last: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`traces --last 0` (or -1) printed every trace: now a usage error, exit 2, like any bad flag."""
    with pytest.raises(SystemExit) as exited:  # argparse's usage error
        cli.main(["traces", f"--last={last}"])
    assert exited.value.code == cli.EXIT_USAGE
    assert "argument --last: " in capsys.readouterr().err
    assert build_parser().parse_args(["traces", "--last", "1"]).last == 1


def test_up_refused_before_starting_says_nothing_about_stopping(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A pre-flight refusal (a busy port) started nothing: no "stopping ..." after the error."""
    previous = signal.getsignal(signal.SIGTERM)  # `up` installs its own; keep pytest's
    with socket.socket() as tcp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        try:
            code = cli.main(["up", "--api-port", str(tcp.getsockname()[1])])
        except SystemExit as exc:
            code = exc.code  # type: ignore[assignment]
        finally:
            signal.signal(signal.SIGTERM, previous)
    out, err = capsys.readouterr()
    assert code not in (0, None)
    assert "ports already in use" in f"{err}{code}"
    assert "stopping" not in out + err
