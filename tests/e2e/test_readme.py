"""Every command in the README runs as written: the walkthrough against a fresh local stack, and the
offline config commands on the files they name."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sagemaker_fastchat.standin import demo
from tests.local_stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"```sh\n(.*?)```", text, flags=re.S)


def walkthrough() -> str:
    start = README.index("<!-- walkthrough: start")
    end = README.index("<!-- walkthrough: end")
    return "\n".join(sh_blocks(README[start:end]))


def run_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_readme_set_up_commands_exist() -> None:
    """The two set-up commands are ./dev up and ./dev test, and .ci/run runs the test one."""
    first = sh_blocks(README)[0]
    assert "./dev up" in first
    assert "./dev test" in first
    assert "./dev test" in (ROOT / ".ci" / "run").read_text()


def test_walkthrough_runs_against_a_fresh_stack_and_ctrl_c_stops_it() -> None:
    """The walkthrough's commands, as written (ports rewritten to this stack's), all succeed in order;
    then Ctrl-C stops the stack with nothing left behind."""
    stack = LocalStack()
    stack.start()
    try:
        script = walkthrough()
        script = script.replace("127.0.0.1:5000", f"127.0.0.1:{stack.ports['moto']}")
        script = script.replace("127.0.0.1:8000", f"127.0.0.1:{stack.ports['api']}")
        script = script.replace("127.0.0.1:8080", f"127.0.0.1:{stack.ports['standin']}")
        venv_bin = str(Path(sys.executable).parent)
        script = script.replace("source .venv/bin/activate", f'export PATH="{venv_bin}:$PATH"')
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["WORKER_URL"] = stack.worker_url
        result = run_script(script, ROOT, env)
        assert result.returncode == 0, result.stdout + result.stderr + stack.log_tail()
        out = result.stdout
        assert "Llama 2 (70B): listed" in out
        assert "version 2 published and served" in out
        line = next(line for line in out.splitlines() if line.startswith("{") and "chat.completion" in line)
        reply, _ = json.JSONDecoder().raw_decode(line)  # curl prints no newline after the JSON
        assert reply["choices"][0]["message"]["content"].startswith("Demo model demo-tgi-llama")
        assert "refused, exit 1" in out
        assert "broken: endpoint_name: 'not valid!' is not a SageMaker endpoint name" in result.stderr
        assert "version 3 published and served" in out
        assert "demo-lmi: unlisted and deleted" in out
        stack.assert_stopped_cleanly()
    finally:
        stack.stop()


def test_offline_config_commands(tmp_path: Path) -> None:
    """The README's `config` commands run on the files they name (created here from the examples)."""
    block = next(b for b in sh_blocks(README) if "config validate" in b)
    lines = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    examples = [
        json.loads(p.read_text()) for p in sorted((ROOT / "sagemaker_fastchat" / "examples").glob("*.json"))
    ]
    dump = {
        "Items": [
            *examples,
            {"model_name": "all-models", "model_names": ",".join(e["model_name"] for e in examples)},
        ]
    }
    (tmp_path / "registry-dump.json").write_text(json.dumps(dump))
    plan = demo.plan("tgi", "demo-tgi", {"inputs": "[[say:captured stream]]"})
    (tmp_path / "captured.bin").write_bytes(b"".join(demo.render_lines("tgi", "demo-tgi", plan)))
    shutil.copytree(ROOT / "sagemaker_fastchat", tmp_path / "sagemaker_fastchat")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for line in lines:
        result = run_script(line, tmp_path, env)
        assert result.returncode == 0, f"{line}\n{result.stdout}{result.stderr}"
        if "decode" in line:
            assert json.loads(result.stdout.splitlines()[-1])["final"]["text"] == "captured stream"


@pytest.mark.parametrize("command", ["./dev", "./dev help"])
def test_dev_script_usage(command: str) -> None:
    """./dev without a known command prints its usage and exits 2 (it installs nothing)."""
    result = subprocess.run(command.split(), cwd=ROOT, capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert "./dev up" in result.stdout


def test_every_command_the_readme_names_exists() -> None:
    """Each subcommand in the README's command table is one the CLI accepts."""
    from sagemaker_fastchat.cli import build_parser

    table = README[README.index("| command | what it does |") :].split("\n\n", 1)[0]
    names: set[str] = set()
    for row in table.splitlines()[2:]:
        cell = row.split("|")[1]
        names.update(re.findall(r"`([a-z][a-z-]*)", cell.replace("\\|", " `")))
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    assert names, "no commands found in the README table"
    missing = sorted(n for n in names if n not in subcommands and n not in ("validate", "request", "decode"))
    assert missing == []


def readme_commands() -> list[str]:
    """Every shell command line in the README's sh blocks, backslash continuations joined."""
    lines: list[str] = []
    for block in sh_blocks(README):
        current = ""
        for raw in block.splitlines():
            line = raw.split("  #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
            current += line.rstrip("\\") + " " if line.endswith("\\") else line
            if not line.endswith("\\"):
                if current.strip():
                    lines.append(current.strip())
                current = ""
    return lines


def test_every_sagemaker_fastchat_command_in_the_readme_parses() -> None:
    """Each `sagemaker-fastchat ...` line anywhere in the README (the AWS ones too) is accepted by the CLI;
    each template the deploy steps name exists."""
    from sagemaker_fastchat.cli import build_parser

    cli_lines = [line for line in readme_commands() if line.startswith("sagemaker-fastchat ")]
    assert len(cli_lines) >= 15
    for line in cli_lines:
        argv = shlex.split(line.split(" || ")[0])[1:]
        args = build_parser().parse_args(argv)
        assert callable(args.handler), line
    for path in re.findall(r"--template-file (CloudFormation/[\w.-]+)", README):
        assert (ROOT / path).exists(), path
