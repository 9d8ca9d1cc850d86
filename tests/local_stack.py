"""The README's first command under test: `sagemaker-fastchat up` as a user runs it, on free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.helpers import free_port

CLI = [sys.executable, "-m", "sagemaker_fastchat.cli"]
OUTPUT = Path(__file__).resolve().parents[1] / "test-output"


class LocalStack:
    def __init__(self, state_dir: Path | None = None, args: Sequence[str] = ()) -> None:
        """A stack on free ports; `state_dir`: where it keeps its state (default: a new, empty folder, so
        every stack starts from the demo models unless a test means to restart on the same state)."""
        self.state_dir = state_dir or Path(tempfile.mkdtemp(prefix="sfc-state-"))
        self.args = list(args)
        self.ports = {
            name: free_port() for name in ("api", "web", "controller", "worker", "moto", "standin", "xray")
        }
        self.lines: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self.descendants: list[psutil.Process] = []
        self.traces_file = self.state_dir / "traces.jsonl"  # `up` keeps its traces in its state folder

    @property
    def env(self) -> dict[str, str]:
        """What a user's shell needs for the CLI to reach this stack (as the README says)."""
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **clean,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.ports['moto']}",
            "AWS_ENDPOINT_URL_SAGEMAKER": f"http://127.0.0.1:{self.ports['standin']}",
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "WORKER_URL": self.worker_url,
            "SFC_STATE_DIR": str(self.state_dir),  # `traces` reads this stack's file (README)
        }

    def dynamodb(self) -> Any:
        """A boto3 DynamoDB client on this stack's moto."""
        import boto3

        return boto3.client(
            "dynamodb",
            endpoint_url=self.env["AWS_ENDPOINT_URL"],
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}/v1"

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['web']}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['worker']}"

    @property
    def standin_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['standin']}"

    def start(self, timeout: float = 240) -> None:
        argv = [*CLI, "up", "--token-rate", "50", "--state-dir", str(self.state_dir), *self.args]
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env["FASTCHAT_CONV_LOG_DIR"] = ""
        for own in ("XRAY_TRACES_FILE", "ARENA_VOTE_SPOOL", "SFC_STATE_DIR"):
            env.pop(own, None)  # `up` puts both files in --state-dir
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.process is not None
            assert self.process.stdout is not None
            try:
                for line in self.process.stdout:
                    self.lines.append(line.rstrip())
                    if "sagemaker-fastchat is up" in line:
                        ready.set()
            except ValueError:
                pass  # closed by stop()

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.5):
            if self.process.poll() is not None or time.monotonic() > deadline:
                lines = "\n".join(self.lines[-60:])
                with contextlib.suppress(Exception):
                    self.stop()  # also closes the output pipe (an unclosed one fails a later test)
                raise RuntimeError("the stack did not come up:\n" + lines)
        self.descendants = psutil.Process(self.process.pid).children(recursive=True)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI, *args], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )

    def model_set(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.worker_url}/model-set", timeout=5).json())

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, as a user would; returns the exit code."""
        if self.process is None or self.process.poll() is not None:
            if self.process is not None and self.process.stdout is not None:
                self.process.stdout.close()
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            raise
        finally:
            time.sleep(0.2)  # let the reader drain the last lines
            if self.process.stdout is not None:
                self.process.stdout.close()

    def assert_stopped_cleanly(self) -> None:
        """Ctrl-C: exit 0, no process left, every port free again."""
        assert (
            len(self.descendants) >= 8
        )  # moto, X-Ray collector, stand-in, controller, sync, worker, API, UI
        assert self.stop() == 0
        time.sleep(0.5)
        assert self.leftovers() == []
        for name, port in self.ports.items():
            if name != "xray":
                with socket.socket() as s:
                    assert s.connect_ex(("127.0.0.1", port)) != 0, f"{name} port {port} still open"

    def leftovers(self) -> list[str]:
        alive = [p for p in self.descendants if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        return [" ".join(p.cmdline()[:4]) for p in alive]

    def log_tail(self, n: int = 80) -> str:
        return "\n".join(self.lines[-n:])
