"""`sagemaker-fastchat models ...` on moto: guards against emptying the set, refused options, and what
`models list` shows when the sync could not publish or warned."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from moto import mock_aws

from sagemaker_fastchat.cli import main
from tests.helpers import example_item
from tests.integration.test_sync import PREFIX, TABLE, Registry


@pytest.fixture
def reg() -> Iterator[Registry]:
    with mock_aws():
        yield Registry()


def models(*args: str) -> int:
    return main(["models", "--table", TABLE, "--ssm-prefix", PREFIX, *args])


def config_file(tmp_path: Path) -> str:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(example_item("tgi")["endpoint_req_config"]))
    return str(path)


def listing(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert models("list", "--json") == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_remove_refuses_to_empty_the_set_without_force(
    reg: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """Removing the last listed model is refused (exit 1, nothing changed) unless --force."""
    reg.put_model("a")
    reg.set_active("a")
    assert models("remove", "a") == 1
    assert "would leave all-models empty and remove every live model (a); pass --force" in (
        capsys.readouterr().err
    )
    assert reg.ddb.get_item(TableName=TABLE, Key={"model_name": {"S": "a"}}).get("Item")
    assert reg.ddb.get_item(TableName=TABLE, Key={"model_name": {"S": "all-models"}})["Item"][
        "model_names"
    ] == {"S": "a"}
    assert models("remove", "a", "--force") == 0
    assert reg.ddb.get_item(TableName=TABLE, Key={"model_name": {"S": "all-models"}})["Item"][
        "model_names"
    ] == {"S": ""}


def test_remove_of_one_of_several_needs_no_force(reg: Registry) -> None:
    """The guard is only about emptying the set."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a,b")
    assert models("remove", "a") == 0


def test_rollback_to_an_empty_version_needs_force(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty past version would remove every model: refused without --force."""
    reg.put_model("a")
    reg.set_active("")
    reg.handler.sync()  # version 1: empty
    reg.set_active("a")
    reg.handler.sync()
    assert models("rollback", "--to", "1") == 1
    assert "pass --force" in capsys.readouterr().err
    assert models("rollback", "--to", "1", "--force") == 0


def test_put_context_length_zero_is_refused(
    reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`--context-length 0` is validated like any value (a `model: context_length: why` line), not dropped."""
    code = models(
        "put", "m", "--endpoint", "demo-tgi", "--config", config_file(tmp_path), "--context-length", "0"
    )
    assert code == 1
    assert "m: context_length: must be a positive whole number" in capsys.readouterr().err
    assert "Item" not in reg.ddb.get_item(TableName=TABLE, Key={"model_name": {"S": "m"}})


def test_list_shows_not_published_and_warnings(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    """A state the sync could not publish is one clear line in text and a field in --json; the rows no
    longer claim `pending` or `removing`; duplicate-name warnings show too."""
    reg.put_model("a")
    reg.put_model("b")
    reg.set_active("a, a")
    reg.handler.sync()
    doc = listing(capsys)
    assert doc["not_published"] is None
    assert any("'a' is listed more than once" in w for w in doc["warnings"])
    reg.put_raw({"model_name": {"S": "all-models"}, "model_names": {"L": [{"S": "a"}, {"S": "b"}]}})
    reg.handler.sync()
    doc = listing(capsys)
    assert "model_names must be a comma-separated string" in doc["not_published"]
    rows = {r["model"]: r["status"] for r in doc["models"]}
    assert rows == {"a": "live, removal not published", "b": "inactive"}
    assert models("list") == 0
    out = capsys.readouterr().out
    assert "NOT PUBLISHED: the registry's current state is not served: all-models: model_names" in out
    assert "warning: all-models: 'a' is listed more than once" in out


def test_list_marks_unpublished_additions(reg: Registry, capsys: pytest.CaptureFixture[str]) -> None:
    """A listed model the sync could not publish says `not published`, not `pending`."""
    reg.put_model("a")
    reg.set_active("a")
    reg.handler.sync()
    reg.put_model("b")
    reg.set_active(",".join(["a", "b", *(f"{i:04d}" + "\u00e9" * 60 for i in range(998))]))
    reg.handler.sync()  # 998 rejections of long non-ASCII names: more than 32 manifest pages
    doc = listing(capsys)
    assert "the limit is 32" in doc["not_published"]
    rows = {r["model"]: r["status"] for r in doc["models"]}
    assert rows["a"] == "live"
    assert rows["b"] == "not published"


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"request": ' + "9" * 5000 + "}", "cannot be read as JSON"),
        (b"\xff\xfe not utf-8", "is not UTF-8 text (byte 0)"),
        (" " * (1 << 20) + "{}", "larger than 1,048,576 bytes"),
        ('{"endpoint_req_config": "' + "[" * 50_000 + '"}', "endpoint_req_config"),
    ],
)
def test_put_hostile_config_files_are_one_line(
    reg: Registry, tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str | bytes, words: str
) -> None:
    """A config nested past Python's stack, a 5,000-digit number, bytes that are not UTF-8, a file over the
    size bound (never read whole), a string config nested past the stack: exit 1, one clear line, nothing
    written."""
    path = tmp_path / "hostile.json"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    assert models("put", "m", "--endpoint", "demo-tgi", "--config", str(path)) == 1
    err = capsys.readouterr().err
    assert words in err
    assert len(err.strip().splitlines()) == 1
    assert "Item" not in reg.ddb.get_item(TableName=TABLE, Key={"model_name": {"S": "m"}})


def test_wait_reads_at_least_once_whatever_the_timeout(
    reg: Registry, capsys: pytest.CaptureFixture[str]
) -> None:
    """`models wait V --timeout 0` still reads the live version: exit 0 when V is published, else a
    timeout naming the version there is (it said `version is None` without looking). A timeout or version
    that is not a number in range (NaN, negative; version 0 or below) is a usage error."""
    reg.put_model("a")
    reg.set_active("a")
    reg.handler.sync()
    no_worker = ("--worker-url", "http://127.0.0.1:9")
    capsys.readouterr()
    assert models("wait", "1", "--timeout", "0", *no_worker) == 0
    assert capsys.readouterr().out.strip() == "version 1 published"
    assert models("wait", "2", "--timeout", "0", *no_worker) == 1
    assert capsys.readouterr().err.strip() == "timed out: model-set version is 1, waiting for 2"
    for bad in (["2", "--timeout", "nan"], ["2", "--timeout", "-1"], ["-1"], ["0"]):
        with pytest.raises(SystemExit) as exited:  # argparse's usage error
            models("wait", *bad, *no_worker)
        assert exited.value.code == 2
        assert "error: argument" in capsys.readouterr().err
