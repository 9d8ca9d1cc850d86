"""Supervised child processes with readable, prefixed logs and a clean stop (no orphans, ports freed).

Each child runs in its own process group; stopping sends SIGTERM to the group, waits, then SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

import httpx

ReadyCheck = Callable[[], bool]


def http_ready(url: str, expect: int = 200) -> ReadyCheck:
    def check() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == expect
        except httpx.HTTPError:
            return False

    return check


@dataclass
class Child:
    name: str
    argv: Sequence[str]
    process: subprocess.Popen[bytes]
    ready: ReadyCheck | None
    lines: list[str] = field(default_factory=list)


class Supervisor:
    def __init__(self, output: IO[str] | None = None, width: int = 11, keep_lines: int = 2000) -> None:
        self.children: dict[str, Child] = {}
        self.output = output if output is not None else sys.stdout
        self.width = width
        self.keep_lines = keep_lines
        self._lock = threading.Lock()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        ready: ReadyCheck | None = None,
    ) -> Child:
        process = subprocess.Popen(
            list(argv),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its own process group: stopped as a whole
        )
        child = Child(name, argv, process, ready)
        self.children[name] = child
        threading.Thread(target=self._pump, args=(child,), daemon=True).start()
        return child

    def _pump(self, child: Child) -> None:
        assert child.process.stdout is not None
        try:
            for raw in child.process.stdout:
                self._emit(child, raw.decode(errors="replace").rstrip())
        except ValueError:
            return  # the pipe was closed by stop()

    def _emit(self, child: Child, line: str) -> None:
        with self._lock:
            child.lines.append(line)
            del child.lines[: -self.keep_lines]
            try:
                self.output.write(f"{child.name:>{self.width}} | {line}\n")
                self.output.flush()
            except ValueError:
                pass  # output closed during shutdown

    def wait_ready(self, names: Sequence[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        for name in names or list(self.children):
            child = self.children[name]
            while child.ready is not None and not child.ready():
                if child.process.poll() is not None:
                    tail = "\n".join(child.lines[-30:])
                    raise RuntimeError(f"{name} exited with code {child.process.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    tail = "\n".join(child.lines[-30:])
                    raise TimeoutError(f"{name} was not ready within {timeout:.0f}s:\n{tail}")
                time.sleep(0.1)

    def stop(self, name: str, timeout: float = 10.0) -> None:
        child = self.children.pop(name, None)
        if child is None or child.process.poll() is not None:
            return
        try:
            os.killpg(child.process.pid, signal.SIGTERM)
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(child.process.pid, signal.SIGKILL)
            child.process.wait(5)
        except ProcessLookupError:
            pass
        if child.process.stdout is not None:
            child.process.stdout.close()

    def stop_all(self, timeout: float = 10.0) -> None:
        for name in reversed(list(self.children)):
            self.stop(name, timeout)

    def failed(self) -> list[str]:
        return [n for n, c in self.children.items() if c.process.poll() is not None]
