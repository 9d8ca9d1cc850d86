"""FastChat's conversation templates through our live-set adapter (fastchat_compat shim 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import fastchat_compat


def test_unrecognised_names_get_the_neutral_template() -> None:
    """A name FastChat's matching does not know, with no conv_template set, gets plain "User:" /
    "Assistant:" turns, never FastChat's one_shot example conversation; known names keep theirs; a
    model's conv_template wins."""
    templates = {"Llama 2 (70B)": "llama-2"}
    fastchat_compat.apply_for_worker(templates.get)
    conv = fastchat_compat.conversation_template("alpha")
    assert conv.name == fastchat_compat.NEUTRAL_TEMPLATE
    conv.append_message(conv.roles[0], "hi")
    conv.append_message(conv.roles[1], None)
    assert conv.get_prompt() == "\nUser: hi\nAssistant:"
    assert "Human" not in conv.get_prompt()
    assert fastchat_compat.conversation_template("vicuna-13b-v1.5").name == "vicuna_v1.1"
    assert fastchat_compat.conversation_template("Llama 2 (70B)").name == "llama-2"
    assert not fastchat_compat.template_recognised("alpha")
    assert not fastchat_compat.template_recognised("Llama 2 (70B)")
    assert fastchat_compat.template_recognised("vicuna-13b-v1.5")


def test_models_cli_warns_when_no_template_applies(capsys: pytest.CaptureFixture[str]) -> None:
    """`models put` / `models list` warn for a prompt-style model FastChat recognises nothing for and
    with no conv_template; not for recognised names or when the template does not matter."""
    from sagemaker_fastchat.models_cli import _warn_template

    _warn_template("Llama 2 (70B)", by_name=True)
    assert "Llama 2 (70B): no conv_template" in capsys.readouterr().err
    _warn_template("vicuna-13b-v1.5", by_name=True)
    _warn_template("Llama 2 (70B)", by_name=False)
    assert capsys.readouterr().err == ""


ROLE_CHECK = """
import logging, sys
from runtime import fastchat_compat

controller = fastchat_compat.apply_for_controller()
assert fastchat_compat.apply_for_controller() is controller  # idempotent
fastchat_compat.apply_for_api()
assert sys.stdout is sys.__stdout__ and sys.stderr is sys.__stderr__
logger = logging.getLogger("controller")
assert logger is controller.logger and not logger.handlers, logger.handlers
assert logger.getEffectiveLevel() == logging.WARNING
logger.warning("routed")
"""


def test_the_controller_and_api_entry_points_keep_fastchats_logging_ours(tmp_path: Path) -> None:
    """Shim 2 through the role entry points, in a fresh interpreter (FastChat builds its loggers at
    import): FastChat's controller writes no log file, keeps stdout and stderr, logs at WARNING through
    our JSON pipeline."""
    env = {**os.environ, "LOG_FORMAT": "json", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("FASTCHAT_LOG_LEVEL", None)
    done = subprocess.run(
        [sys.executable, "-c", ROLE_CHECK], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert list(tmp_path.iterdir()) == []  # no controller.log
    (line,) = [json.loads(x) for x in done.stderr.splitlines() if '"routed"' in x]
    assert (line["logger"], line["level"]) == ("controller", "warning")
