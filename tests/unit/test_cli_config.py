"""`sagemaker-fastchat config validate|request|decode` and the CLI's error mapping: outputs and exit codes,
through `cli.main(argv)` in-process; one smoke test runs the console command as a process."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from sagemaker_fastchat.cli import main
from sagemaker_fastchat.standin import demo
from tests.helpers import example_item

EXAMPLES_DIR = Path(__file__).resolve().parents[2] / "sagemaker_fastchat" / "examples"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


Cli = Callable[..., Result]


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """`sagemaker-fastchat ARGS` in this process: `cli.main(argv)`, its exit code and its output."""

    def run(*args: str, stdin: bytes | None = None) -> Result:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = exc.code if isinstance(exc.code, int) else 1
        out = capsys.readouterr()
        return Result(code, out.out, out.err)

    return run


def write(tmp_path: Path, name: str, value: Any) -> str:
    path = tmp_path / name
    path.write_text(value if isinstance(value, str) else json.dumps(value))
    return str(path)


@pytest.mark.parametrize("example", ["tgi.json", "openai-sse.json", "lmi-jsonlines.json"])
def test_validate_shipped_examples(example: str, cli: Cli) -> None:
    """The shipped examples are valid (exit 0)."""
    result = cli("config", "validate", str(EXAMPLES_DIR / example))
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid: 1 model(s)")


def test_validate_refuses_with_one_line_per_problem(tmp_path: Path, cli: Cli) -> None:
    """Exit 1 and one line per problem naming model and dotted field."""
    item = example_item("tgi")
    del item["endpoint_req_config"]["request"]["mapping"]["prompt"]
    item["endpoint_name"] = "bad name"
    result = cli("config", "validate", write(tmp_path, "bad.json", item))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert "demo-tgi: endpoint_name: 'bad name' is not a SageMaker endpoint name" in lines[0]
    assert lines[1].startswith("demo-tgi: endpoint_req_config.request.mapping.prompt: is missing")


def test_validate_registry_dump_with_json_output(tmp_path: Path, cli: Cli) -> None:
    """A scan dump (typed items) is checked with the all-models rules; --json prints the report."""
    dump = {
        "Items": [
            {"model_name": {"S": "all-models"}, "model_names": {"S": "demo-tgi, ghost, demo-tgi"}},
            {k: {"S": v if isinstance(v, str) else json.dumps(v)} for k, v in example_item("tgi").items()},
        ]
    }
    result = cli("config", "validate", "--json", write(tmp_path, "dump.json", dump))
    assert result.returncode == 1
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["models"] == ["demo-tgi"]
    assert report["problems"] == [
        {
            "model": "ghost",
            "field": "all-models.model_names",
            "reason": "is listed but the file has no item with this model_name",
        }
    ]
    assert any("more than once" in w for w in report["warnings"])


def test_validate_unreadable_files(tmp_path: Path, cli: Cli) -> None:
    """A missing file or non-JSON is one clear line, exit 1."""
    assert cli("config", "validate", str(tmp_path / "nope.json")).returncode == 1
    result = cli("config", "validate", write(tmp_path, "x.json", "{oops"))
    assert result.returncode == 1
    assert "not JSON" in result.stderr


def test_validate_binary_file_is_one_line(tmp_path: Path, cli: Cli) -> None:
    """A file that is not UTF-8 text: exit 1 and one `error:` line, no traceback."""
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\x80\x81\xfe\xff")
    result = cli("config", "validate", str(binary))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line == f"error: {binary}: is not UTF-8 text (byte 0)"


def test_usage_error_exit_2(cli: Cli) -> None:
    """Usage errors exit 2."""
    assert cli("config").returncode == 2
    assert cli("config", "request").returncode == 2


def test_request_with_sets(cli: Cli) -> None:
    """--set values are JSON when they parse, else strings; the body follows the request rules."""
    result = cli(
        "config",
        "request",
        str(EXAMPLES_DIR / "tgi.json"),
        "--set",
        "prompt=Tell me a joke",
        "--set",
        "temperature=0",
        "--set",
        "stop=END",
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["inputs"] == "Tell me a joke"
    assert body["parameters"]["stop"] == ["END"]
    assert body["parameters"]["do_sample"] is False
    assert "temperature" not in body["parameters"]


def test_request_needs_model_when_several(tmp_path: Path, cli: Cli) -> None:
    """A file with several items needs --model, and an unknown --model is named."""
    path = write(tmp_path, "two.json", [example_item("tgi"), example_item("lmi-jsonlines")])
    assert "--model" in cli("config", "request", path).stderr
    assert cli("config", "request", path, "--model", "demo-lmi").returncode == 0
    assert "no model named 'x'" in cli("config", "request", path, "--model", "x").stderr


def test_decode_from_stdin_in_small_parts(cli: Cli) -> None:
    """Raw payload bytes decode to one JSON line per event and a final line with the full text."""
    p = demo.plan("tgi", "demo-tgi", {"inputs": "[[say:Hi there]]"})
    raw = b"".join(demo.render_lines("tgi", "demo-tgi", p))
    result = cli("config", "decode", str(EXAMPLES_DIR / "tgi.json"), "--part-size", "3", stdin=raw)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["text"] for e in lines[:-1]] == ["Hi", " there"]
    assert lines[-1]["final"]["text"] == "Hi there"
    assert lines[-1]["final"]["finish_reason"] == "stop"


def test_decode_file_with_error_line(tmp_path: Path, cli: Cli) -> None:
    """A stream that carries an error object ends with an error line and exit 1."""
    path = write(
        tmp_path, "s.raw", 'data:{"token":{"text":"a"}}\ndata:{"error":"boom","error_type":"generation"}\n'
    )
    result = cli("config", "decode", str(EXAMPLES_DIR / "tgi.json"), path)
    assert result.returncode == 1
    assert json.loads(result.stdout.splitlines()[-1]) == {
        "final": {"error": "boom (generation)", "text": "a"}
    }


def test_decode_not_json_line(tmp_path: Path, cli: Cli) -> None:
    """A line that is not JSON is reported with the model's name, exit 1."""
    path = write(tmp_path, "s.raw", "data:<html>\n")
    result = cli("config", "decode", str(EXAMPLES_DIR / "tgi.json"), path)
    assert result.returncode == 1
    assert "demo-tgi: a streamed line is not JSON" in result.stderr


@pytest.mark.parametrize("steps", [60, 1200])
def test_validate_refuses_long_paths_without_a_traceback(tmp_path: Path, steps: int, cli: Cli) -> None:
    """A 60-step and a 1,200-step JSONPath: exit 1 and one `model: field: why` line, no traceback."""
    item = example_item("tgi")
    item["endpoint_req_config"]["response"]["mapping"]["text"] = "$" + ".a" * steps
    result = cli("config", "validate", write(tmp_path, "long.json", item))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("demo-tgi: endpoint_req_config.response.mapping.text: ")
    assert "the limit is" in line


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"model_name": ' + "9" * 5000 + "}", "cannot be read as JSON"),
    ],
)
def test_validate_unreadable_files_without_a_traceback(
    tmp_path: Path, text: str, words: str, cli: Cli
) -> None:
    """A file nested past Python's stack or holding a 5,000-digit number: exit 1, one line."""
    result = cli("config", "validate", write(tmp_path, "odd.json", text))
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert words in line


def test_validate_hostile_names_without_a_traceback(tmp_path: Path, cli: Cli) -> None:
    """Lone surrogates, NUL and direction overrides in names print escaped, never crash the output."""
    items = [{**example_item("tgi"), "model_name": name} for name in ("a\udc80", "a\x00b", "x\u202egpt")]
    path = tmp_path / "names.json"
    path.write_text(json.dumps(items))  # ensure_ascii: the lone surrogate travels as \udc80
    result = cli("config", "validate", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 3


def test_validate_escapes_hostile_listed_names(tmp_path: Path, cli: Cli) -> None:
    """Names listed in all-models are shown escaped: a lone surrogate or a direction override in the
    list never reaches the terminal as is."""
    path = tmp_path / "all.json"
    path.write_text(json.dumps([{"model_name": "all-models", "model_names": "a\udc80,b\u202ec"}]))
    result = cli("config", "validate", "--json", str(path))
    assert result.returncode == 1
    models = [p["model"] for p in json.loads(result.stdout)["problems"]]
    assert models == ["<model 'a\\udc80'>", "<model 'b\\u202ec'>"]


def test_console_command_runs_as_a_process() -> None:
    """The one process-level smoke test: `python -m sagemaker_fastchat.cli` as the console script runs it."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sagemaker_fastchat.cli",
            "config",
            "validate",
            str(EXAMPLES_DIR / "tgi.json"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("valid: 1 model(s)")


@pytest.mark.parametrize("models", [1, 2_000])
def test_a_reader_gone_early_is_no_traceback(tmp_path: Path, models: int) -> None:
    """`sagemaker-fastchat ... | head`: the pipe closes before (or while) the command writes; it exits 141
    (as a shell reports SIGPIPE) quietly, not with a BrokenPipeError traceback (in a print, or in the flush
    at exit)."""
    path = tmp_path / "items.json"
    path.write_text(json.dumps([{**example_item("tgi"), "model_name": f"m{i}"} for i in range(models)]))
    with subprocess.Popen(
        [sys.executable, "-m", "sagemaker_fastchat.cli", "config", "validate", "--json", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()  # before the child has written anything: it takes a second to import
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err, err
    assert "Exception ignored" not in err, err


def test_models_without_a_region_is_a_clear_error_exit_3(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No region anywhere (environment, config file): one clear line and exit 3, not a traceback."""
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    result = cli("models", "list")
    assert result.returncode == 3
    assert result.stderr.startswith("error: no AWS region is set")
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stdout == ""


def test_a_reader_gone_before_the_output_is_exit_141_without_a_traceback(tmp_path: Path) -> None:
    """`sagemaker-fastchat ... | head -1` where head has already gone: no BrokenPipeError traceback."""
    import os

    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "sagemaker_fastchat.cli",
                "config",
                "validate",
                str(EXAMPLES_DIR / "tgi.json"),
            ],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert "Traceback" not in done.stderr
