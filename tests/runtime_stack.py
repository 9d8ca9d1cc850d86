"""A runtime under test: moto (SSM) in server mode, the SageMaker stand-in, and FastChat's controller,
our worker and our OpenAI-compatible API as real processes."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
import httpx
from moto.server import ThreadedMotoServer

from contract.registry import evaluate_registry
from sagemaker_fastchat.supervisor import Supervisor, http_ready
from stores.ssm import SnapshotWriter, SsmParameters
from sync.publisher import PublishResult, publish
from tests.helpers import example_item, free_port

PREFIX = "/rt-test"
CLI = [sys.executable, "-m", "sagemaker_fastchat.cli"]


def model(name: str, example: str = "tgi", **changes: Any) -> dict[str, Any]:
    return {**example_item(example), "model_name": name, **changes}


class RuntimeStack:
    def __init__(self, standin_url: str, poll_interval: float = 0.3) -> None:
        self.standin_url = standin_url
        self.poll_interval = poll_interval
        self.moto_port = free_port()
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=self.moto_port, verbose=False)
        self.moto.start()
        self.moto_url = f"http://127.0.0.1:{self.moto_port}"
        self.ssm = boto3.client("ssm", endpoint_url=self.moto_url, region_name="us-east-1")
        self.store = SnapshotWriter(SsmParameters(self.ssm), PREFIX)
        self.log = io.StringIO()
        self.sup = Supervisor(output=self.log)
        self.controller_port, self.worker_port, self.api_port = free_port(), free_port(), free_port()
        self.items: dict[str, dict[str, Any]] = {}

    @property
    def controller_url(self) -> str:
        return f"http://127.0.0.1:{self.controller_port}"

    @property
    def worker_url(self) -> str:
        return f"http://127.0.0.1:{self.worker_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/v1"

    def env(self) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": self.moto_url,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": self.standin_url,
            "AWS_ENDPOINT_URL_SAGEMAKER": self.standin_url,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "LOG_FORMAT": "json",
            "FASTCHAT_WORKER_API_TIMEOUT": "30",
        }

    def start_controller(self) -> None:
        self.sup.start(
            "controller",
            [*CLI, "controller", "--port", str(self.controller_port)],
            self.env(),
            http_ready(f"{self.controller_url}/list_models", expect=405),
        )
        self.sup.wait_ready(["controller"])

    def start_worker(self) -> None:
        argv = [
            *CLI,
            "worker",
            "--port",
            str(self.worker_port),
            "--controller-address",
            self.controller_url,
            "--ssm-prefix",
            PREFIX,
            "--poll-interval",
            str(self.poll_interval),
            "--heartbeat-interval",
            "1",
        ]
        self.sup.start("worker", argv, self.env(), http_ready(f"{self.worker_url}/health"))
        self.sup.wait_ready(["worker"])

    def start_api(self, *extra: str) -> None:
        argv = [
            *CLI,
            "api",
            "--port",
            str(self.api_port),
            "--controller-address",
            self.controller_url,
            *extra,
        ]
        self.sup.start("api", argv, self.env(), http_ready(f"http://127.0.0.1:{self.api_port}/health"))
        self.sup.wait_ready(["api"])

    def start(self) -> None:
        self.start_controller()
        self.start_worker()
        self.start_api()

    def publish(self, items: list[dict[str, Any]], active: list[str] | None = None) -> PublishResult:
        names = active if active is not None else [i["model_name"] for i in items]
        all_models = {"model_name": "all-models", "model_names": ",".join(names)}
        return publish(evaluate_registry([*items, all_models]), self.store)

    def model_set(self) -> dict[str, Any]:
        return dict(httpx.get(f"{self.worker_url}/model-set", timeout=5).json())

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if predicate():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}\n{self.log.getvalue()[-4000:]}")

    def wait_version(self, version: int) -> None:
        self.wait_for(
            lambda: (self.model_set().get("version") or 0) >= version, what=f"worker at version {version}"
        )

    def controller_models(self) -> list[str]:
        r = httpx.post(f"{self.controller_url}/list_models", timeout=5)
        return list(r.json()["models"])

    def close(self) -> None:
        self.sup.stop_all()
        self.moto.stop()
