"""Every setting is a flag and an environment variable: flag > variable > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from sagemaker_fastchat.cli import build_parser


def test_defaults_of_the_local_stack() -> None:
    """The documented local defaults (docs/design.md "Command line")."""
    args = build_parser().parse_args(["up"])
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
    args = build_parser().parse_args(["up"])
    assert args.api_port == 9000
    assert args.poll_interval == 2.5
    assert build_parser().parse_args(["up", "--api-port", "9100"]).api_port == 9100
    assert build_parser().parse_args(["worker"]).limit_concurrency == 64


def test_state_dir_flag_then_variable_then_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`up`'s state folder: --state-dir, else $SFC_STATE_DIR, else $XDG_STATE_HOME/sagemaker-fastchat."""
    from sagemaker_fastchat.local_stack import state_dir

    monkeypatch.delenv("SFC_STATE_DIR", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert state_dir(build_parser().parse_args(["up"])) == tmp_path / "xdg" / "sagemaker-fastchat"
    monkeypatch.setenv("SFC_STATE_DIR", str(tmp_path / "env"))
    assert state_dir(build_parser().parse_args(["up"])) == tmp_path / "env"
    flag = build_parser().parse_args(["up", "--state-dir", str(tmp_path / "flag")])
    assert state_dir(flag) == tmp_path / "flag"
    assert build_parser().parse_args(["up", "--fresh"]).fresh is True
