"""The local stack for the harness: `sagemaker-fastchat up`'s own start-up code, run so that the harness
can kill and restart single processes (as ECS would restart a task's container) and can put a fault
proxy between the worker and SSM.

`sagemaker-fastchat up` stops everything when one child dies; here the harness owns the supervisor.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import boto3
import httpx

from sagemaker_fastchat import local_stack
from sagemaker_fastchat.registry_ops import Registry
from sagemaker_fastchat.supervisor import Child, ReadyCheck, Supervisor
from stores.registry import DynamoRegistry
from stores.ssm import PublishedSet, SnapshotReader, SsmParameters
from tests.helpers import free_port  # ports below the ephemeral range (see there)

ROLES = ("api", "web", "controller", "worker", "moto", "standin", "xray")


class HarnessSupervisor(Supervisor):
    """Adds per-child environment (e.g. the worker's SSM endpoint) and remembers it for restarts."""

    def __init__(self, output: IO[str], extra_env: Mapping[str, Mapping[str, str]]) -> None:
        super().__init__(output=output)
        self.extra_env = extra_env
        self.envs: dict[str, dict[str, str]] = {}
        self.argvs: dict[str, Sequence[str]] = {}
        self.readies: dict[str, ReadyCheck | None] = {}

    def start(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        ready: ReadyCheck | None = None,
    ) -> Child:
        full = {**(env or {}), **self.extra_env.get(name, {})}
        self.envs[name], self.argvs[name], self.readies[name] = full, argv, ready
        return super().start(name, argv, full, ready)


class HarnessStack:
    def __init__(
        self,
        workdir: Path,
        *,
        token_rate: float = 50.0,
        poll_interval: float = 1.0,
        worker_env: Mapping[str, str] | None = None,
        ssm_proxy_port: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.ports = {name: free_port() for name in ROLES}
        self.token_rate = token_rate
        self.poll_interval = poll_interval
        worker = dict(worker_env or {})
        if ssm_proxy_port is not None:  # botocore honours per-service endpoints: only SSM goes through it
            worker["AWS_ENDPOINT_URL_SSM"] = f"http://127.0.0.1:{ssm_proxy_port}"
        self.log: IO[str] = (workdir / "stack.log").open("a", encoding="utf-8")
        self.sup = HarnessSupervisor(self.log, {"worker": worker})

    # --- addresses --------------------------------------------------------------------------------
    def url(self, role: str) -> str:
        return f"http://127.0.0.1:{self.ports[role]}"

    @property
    def api_url(self) -> str:
        return self.url("api") + "/v1"

    @property
    def moto_url(self) -> str:
        return self.url("moto")

    def boto(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.moto_url,
            region_name="us-east-1",
            aws_access_key_id="local",
            aws_secret_access_key="local",
        )

    def registry(self) -> Registry:
        return Registry(DynamoRegistry(self.boto("dynamodb"), "sagemaker-fastchat-models"))

    def reader(self) -> SnapshotReader:
        return SnapshotReader(SsmParameters(self.boto("ssm")), "/sagemaker-fastchat")

    def manifest(self) -> PublishedSet | None:
        return self.reader().load_manifest()

    def cli_env(self) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        return {
            **clean,
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "WORKER_URL": self.url("worker"),
            "SFC_STATE_DIR": str(self.workdir / "state"),  # `traces` reads this stack's file
        }

    # --- life cycle -------------------------------------------------------------------------------
    def start(self, timeout: float = 240) -> None:
        parser = argparse.ArgumentParser()
        local_stack.register(parser.add_subparsers())
        argv = ["up", "--no-web", "--token-rate", str(self.token_rate)]
        argv += ["--poll-interval", str(self.poll_interval), "--ready-timeout", str(timeout)]
        argv += ["--state-dir", str(self.workdir / "state")]  # its own, never the user's local stack's
        for name, port in self.ports.items():
            argv += [f"--{name}-port", str(port)]
        args = parser.parse_args(argv)
        saved = dict(os.environ)
        os.environ["FASTCHAT_CONV_LOG_DIR"] = ""
        try:  # start_stack points os.environ at the stack for its own boto3 calls: undo that afterwards
            local_stack.start_stack(args, self.sup)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def stop(self) -> None:
        self.sup.stop_all(timeout=15)
        self.log.close()

    def pid(self, name: str) -> int | None:
        child = self.sup.children.get(name)
        return child.process.pid if child and child.process.poll() is None else None

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        child = self.sup.children[name]
        os.killpg(child.process.pid, sig)
        child.process.wait(15)

    def restart(self, name: str, timeout: float = 120) -> None:
        """Start a killed child again with its argv and environment (what ECS does for a container)."""
        old = self.sup.children.pop(name, None)
        if old is not None and old.process.poll() is None:
            os.killpg(old.process.pid, signal.SIGKILL)
            old.process.wait(15)
        self.sup.start(name, self.sup.argvs[name], self.sup.envs[name], self.sup.readies[name])
        self.sup.wait_ready([name], timeout=timeout)

    def log_tail(self, name: str, n: int = 20) -> list[str]:
        child = self.sup.children.get(name)
        return child.lines[-n:] if child else []

    # --- probes -----------------------------------------------------------------------------------
    def model_set(self) -> dict[str, Any]:
        return dict(httpx.get(self.url("worker") + "/model-set", timeout=5).json())

    def ready_status(self) -> int | None:
        try:
            return httpx.get(self.url("worker") + "/ready", timeout=5).status_code
        except httpx.HTTPError:
            return None

    def queue_length(self) -> int | None:
        """Busy worker slots (FastChat's status): a slot that is never given back shows here."""
        try:
            status = httpx.post(self.url("worker") + "/worker_get_status", timeout=5).json()
            return int(status["queue_length"])
        except (httpx.HTTPError, KeyError, ValueError, TypeError):
            return None

    def wait_for(self, predicate: Any, timeout: float, step: float = 0.1) -> float | None:
        """Seconds until predicate() is true, or None on timeout (exceptions count as false)."""
        start = time.monotonic()
        while True:
            try:
                if predicate():
                    return time.monotonic() - start
            except Exception:  # a probe of a process that is down: not yet
                pass
            if time.monotonic() - start > timeout:
                return None
            time.sleep(step)


def new_workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="sfc-reliability-"))
