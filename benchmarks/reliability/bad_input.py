"""Bad input: each malformed registry write or API / worker request must get a clear refusal (or, for a
raw table write, a published rejection) and change nothing else: the other models answer byte for byte
as before (demo replies at temperature 0 are deterministic), the worker stays ready, frees every slot
and keeps serving the last good specs.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from botocore.exceptions import ClientError

from benchmarks.reliability.cases import (
    VICTIM,
    VICTIM_ENDPOINT,
    RegistryCase,
    RequestCase,
    _victim,
    registry_cases,
    request_cases,
    tgi_config,
)
from benchmarks.reliability.chat import describe_error, sync_chat
from benchmarks.reliability.report import Check, Results
from benchmarks.reliability.stack import HarnessStack
from benchmarks.reliability.swap import served
from sagemaker_fastchat.registry_ops import put_model, remove_model

REFERENCE_MODELS = ("demo-tgi", "demo-openai", "demo-lmi", VICTIM)
PROBLEM_LINE = re.compile(r"^(error: .+|[^\n]+: [^\n]+: [^\n]+)$")
SERVER_PATH = re.compile(r"/(?:usr|home|opt|work|tmp|site-packages)/\S+\.py")
LENIENT = ("/count_token", "/model_details", "/worker_get_conv_template")


@dataclass
class BadInputSettings:
    registry_ids: tuple[str, ...] | None = None  # None: every case
    request_ids: tuple[str, ...] | None = None
    settle_timeout: float = 10.0  # how long a raw write may take to be published (rejected) and served


class Baseline:
    def __init__(self, stack: HarnessStack) -> None:
        self.stack = stack
        self.replies: dict[str, str] = {}
        self.turn = 0

    def prompt(self, model: str) -> str:
        return f"[[tokens:12]] reference reply of {model}"

    def take(self) -> None:
        for model in REFERENCE_MODELS:
            self.replies[model] = sync_chat(self.stack.api_url, model, self.prompt(model))

    def differences(self, models: tuple[str, ...] | None = None) -> list[str]:
        """Models whose reply changed (or that failed to answer)."""
        if models is None:  # one model per check, in turn (the final check asks all of them)
            models = (REFERENCE_MODELS[self.turn % len(REFERENCE_MODELS)],)
            self.turn += 1
        out = []
        for model in models:
            try:
                reply = sync_chat(self.stack.api_url, model, self.prompt(model))
            except Exception as exc:  # what the client saw is the finding
                out.append(f"{model}: {describe_error(exc)}")
                continue
            if reply != self.replies[model]:
                out.append(f"{model}: reply changed ({reply[:60]!r})")
        return out


def worker_problems(stack: HarnessStack, victim_hash: str | None, busy_before: int = 0) -> list[str]:
    """What changed for everyone else: readiness, busy slots (beyond those busy before), the victim's spec."""
    problems = []
    ready = stack.ready_status()
    if ready != 200:
        problems.append(f"/ready {ready}")
    if stack.wait_for(lambda: (stack.queue_length() or 0) <= busy_before, 3) is None:
        leaked = (stack.queue_length() or 0) - busy_before
        problems.append(f"{leaked} worker slot(s) never freed")
    if victim_hash is not None:
        entry = served(stack.model_set(), VICTIM)
        if entry is None or entry["hash"] != victim_hash:
            problems.append(f"{VICTIM}'s last good spec is no longer served ({entry and entry['hash']})")
    return problems


def run_cli(stack: HarnessStack, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [sys.executable, "-m", "sagemaker_fastchat.cli", *args],
            env=stack.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(args, -1, "", "(no answer within 60 s)")


def _stderr_summary(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if "Traceback" in stderr:
        return "traceback: " + (lines[-1] if lines else "")
    return " / ".join(lines[:2]) if lines else "(nothing on stderr)"


def _config_file(workdir: Path, case: RegistryCase) -> Path:
    target = workdir / f"{case.id}.json"
    if case.config is None:
        target.write_text(json.dumps(tgi_config()))
    elif isinstance(case.config, str):
        target.write_bytes(case.config.encode("utf-8", "surrogateescape") if case.config else b"")
        if case.config.startswith("\x80"):
            target.write_bytes(b"\x80\x81\xfe\xff")
    else:
        target.write_text(json.dumps(case.config))
    return target


def mentions(doc: Any, word: str = "all-models") -> set[str]:
    """Every string (key or value) in a JSON document that mentions `word`: what an operator can read."""
    if isinstance(doc, dict):
        return set().union(*(mentions(k, word) | mentions(v, word) for k, v in doc.items()))
    if isinstance(doc, list):
        return set().union(*(mentions(v, word) for v in doc))
    return {doc} if isinstance(doc, str) and word in doc else set()


class RegistryRunner:
    def __init__(self, stack: HarnessStack, results: Results, baseline: Baseline, settings: BadInputSettings):
        self.stack, self.results, self.baseline, self.settings = stack, results, baseline, settings
        self.registry = stack.registry()
        self.good_hash = self.victim_hash()  # the victim's good spec, which each case starts from

    def victim_hash(self) -> str | None:
        entry = served(self.stack.model_set(), VICTIM)
        return str(entry["hash"]) if entry else None

    def run(self, case: RegistryCase) -> None:
        try:
            ok, observed = getattr(self, "_" + case.channel.replace("-", "_"))(case)
        except Exception as exc:  # the harness reports, never stops
            ok, observed = False, f"harness error: {describe_error(exc)}"
        self.results.add(Check("registry", case.id, ok, f"{case.channel}: {case.what}", observed))

    def _put(self, case: RegistryCase) -> tuple[bool, str]:
        before = self.registry.scan()
        victim = self.victim_hash()
        config = _config_file(self.stack.workdir, case)
        proc = run_cli(
            self.stack,
            "models",
            "put",
            case.name,
            "--endpoint",
            case.endpoint,
            "--config",
            str(config),
            *case.args,
        )
        observed = f"exit {proc.returncode}: {_stderr_summary(proc.stderr or proc.stdout)}"
        if case.accepted and proc.returncode == 0:
            observed, problems = self._accepted_put(case, before)
        else:
            problems = []
            if proc.returncode != 1:
                problems.append(f"exit {proc.returncode}")
            lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
            if proc.returncode == 1 and not any(PROBLEM_LINE.match(line) for line in lines):
                problems.append("no `model: field: why` line")
            if self.registry.scan() != before:
                problems.append("the registry changed")
                self._undo_put(case, before)
        if "Traceback" in proc.stderr:
            problems.append("a traceback")
        problems += worker_problems(self.stack, victim) + self.baseline.differences()
        return not problems, observed + (f" — FAIL: {'; '.join(problems)}" if problems else "")

    def _accepted_put(self, case: RegistryCase, before: list[dict[str, Any]]) -> tuple[str, list[str]]:
        """An input accepted by design: the model must be served and answer promptly; then it goes."""
        problems = []
        if (
            self.stack.wait_for(
                lambda: served(self.stack.model_set(), case.name) is not None, self.settings.settle_timeout
            )
            is None
        ):
            problems.append("accepted but never served")
        try:
            reply = sync_chat(self.stack.api_url, case.name, "[[tokens:12]] accepted input", timeout=30)
            if "not a real LLM" not in reply:
                problems.append(f"it answered {reply[:60]!r}")
        except Exception as exc:  # what the client saw is the finding
            reply = describe_error(exc)
            problems.append(f"it did not answer ({reply[:100]})")
        self._undo_put(case, before)
        return f"exit 0, {case.accepted}; a chat with it: {reply[:60]!r}", problems

    def _undo_put(self, case: RegistryCase, before: list[dict[str, Any]]) -> None:
        if not any(i.get("model_name") == case.name for i in before):
            remove_model(self.registry, case.name)
        self.stack.wait_for(
            lambda: served(self.stack.model_set(), case.name) is None, self.settings.settle_timeout
        )

    def _validate(self, case: RegistryCase) -> tuple[bool, str]:
        proc = run_cli(self.stack, "config", "validate", str(_config_file(self.stack.workdir, case)))
        lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
        problems = []
        if case.accepted and proc.returncode == 0 and "Traceback" not in proc.stderr:
            return True, f"exit 0: {proc.stdout.strip()[:80]} ({case.accepted})"
        if proc.returncode != 1:
            problems.append(f"exit {proc.returncode}")
        if "Traceback" in proc.stderr:
            problems.append("a traceback")
        elif not lines or not all(PROBLEM_LINE.match(line) for line in lines):
            problems.append("not one `model: field: why` line per problem")
        observed = f"exit {proc.returncode}: {_stderr_summary(proc.stderr or proc.stdout)}"
        return not problems, observed + (f" — FAIL: {'; '.join(problems)}" if problems else "")

    def _raw(self, case: RegistryCase) -> tuple[bool, str]:
        victim = self.victim_hash()
        start = self.stack.manifest()
        start_version = start.version if start else 0
        try:
            self.registry.store.put(case.item)
        except ClientError as exc:
            problems = worker_problems(self.stack, victim) + self.baseline.differences()
            error = exc.response["Error"]
            observed = f"refused by DynamoDB: {error['Code']}: {error['Message'][:100]}"
            return not problems, observed + (f" — FAIL: {'; '.join(problems)}" if problems else "")

        def outcome() -> tuple[int, str] | None:
            published = self.stack.manifest()
            if published is None or published.version <= start_version:
                return None
            reason = published.manifest.rejected.get(VICTIM)
            entry = next((e for e in published.manifest.models if e.name == VICTIM), None)
            if reason:
                return published.version, f"rejected: {reason}"
            if entry is not None and entry.hash != victim:
                return published.version, "ACCEPTED: published as live"
            return None

        found: list[tuple[int, str]] = []

        def published() -> bool:
            got = outcome()
            if got is not None and not found:
                found.append(got)
            return bool(found)

        self.stack.wait_for(published, self.settings.settle_timeout)
        problems = []
        if not found:
            within = f"{self.settings.settle_timeout:.0f} s"
            problems.append(f"nothing published within {within} (sync log: {self._sync_tail()})")
        else:
            version, text = found[0]
            if text.startswith("ACCEPTED") and not case.accepted:
                problems.append("the bad item was published as live")
            served_at = self.stack.wait_for(
                lambda: int(self.stack.model_set().get("version") or 0) >= version,
                self.settings.settle_timeout,
            )
            if served_at is None:
                problems.append(f"the worker did not reach version {version}")
        keeps_spec = victim if not problems and not case.accepted else None
        problems += worker_problems(self.stack, keeps_spec) + self.baseline.differences((VICTIM,))
        problems += self._restore_victim()
        observed = found[0][1] if found else "no published outcome"
        if case.accepted and found:
            observed += f" ({case.accepted}); its replies are unchanged"
        return not problems, observed + (f" — FAIL: {'; '.join(problems)}" if problems else "")

    def _sync_tail(self) -> str:
        lines = [line for line in self.stack.log_tail("sync", 30) if "Error" in line or "error" in line]
        return lines[-1][-160:] if lines else "no error logged"

    def _restore_victim(self) -> list[str]:
        """Write the victim's good item back and check the sync publishes it (or restart a wedged sync)."""
        self.registry.store.put(_victim())

        def clean() -> bool:
            published, snap = self.stack.manifest(), self.stack.model_set()
            return (
                published is not None
                and VICTIM not in published.manifest.rejected
                and (served(snap, VICTIM) or {}).get("hash") == self.good_hash
                and VICTIM not in (snap.get("rejected") or {})
            )

        if self.stack.wait_for(clean, self.settings.settle_timeout) is not None:
            return []
        self.stack.restart("sync")
        self.stack.wait_for(clean, self.settings.settle_timeout)
        return ["the sync did not publish the repaired item (restarted it)"]

    def models_list(self) -> Any:
        try:
            return json.loads(run_cli(self.stack, "models", "list", "--json").stdout)
        except ValueError:
            return None

    def _all_models(self, case: RegistryCase) -> tuple[bool, str]:
        original = self.registry.get("all-models")
        live_before = [m["name"] for m in self.stack.model_set()["models"]]
        served_before, listed_before = mentions(self.stack.model_set()), mentions(self.models_list())
        victim = self.victim_hash()
        try:
            if case.item:
                self.registry.store.put(case.item)
            else:
                self.registry.store.delete("all-models")
        except ClientError as exc:
            refused = f"refused by DynamoDB: {exc.response['Error']['Code']}"
            problems = worker_problems(self.stack, victim) + self.baseline.differences()
            return not problems, refused + (f" — FAIL: {'; '.join(problems)}" if problems else "")

        shown: list[str] = []

        def reported() -> bool:
            shown[:] = sorted(mentions(self.stack.model_set()) - served_before)
            return bool(shown)

        problems = []
        if self.stack.wait_for(reported, self.settings.settle_timeout, step=0.3) is None:
            problems.append("no reason shown in /model-set")
        listed = sorted(mentions(self.models_list()) - listed_before)
        if not listed:
            problems.append("no reason shown in `models list`")
        live_after = [m["name"] for m in self.stack.model_set()["models"]]
        if live_after != live_before:
            problems.append(f"the live set changed to {live_after[:5]}")
        problems += worker_problems(self.stack, victim) + self.baseline.differences()
        # Repair, then prove the sync still publishes: a new description on the victim must be served.
        assert original is not None
        names = str(original["model_names"])
        self.registry.store.put({"model_name": {"S": "all-models"}, "model_names": {"S": names}})
        probe = f"probe after {case.id}"
        self.registry.store.put(_victim(description={"S": probe}))
        live = lambda: (served(self.stack.model_set(), VICTIM) or {}).get("description") == probe  # noqa: E731
        if self.stack.wait_for(live, self.settings.settle_timeout) is None:
            problems.append(f"the sync stopped publishing ({self._sync_tail()}); restarted it")
            self.stack.restart("sync")
            self.stack.wait_for(live, self.settings.settle_timeout)
        problems += self._restore_victim()
        observed = f"/model-set: {shown[0][:120]!r}" if shown else "/model-set: no reason"
        observed += f"; models list: {listed[0][:80]!r}" if listed else "; models list: no reason"
        return not problems, observed + (f" — FAIL: {'; '.join(problems)}" if problems else "")


def _judge_api(case: RequestCase, response: httpx.Response) -> tuple[bool, str]:
    text = response.text
    head = f"{response.status_code} {' '.join(text.split())[:160]}"
    if leak := SERVER_PATH.search(text):
        return False, head + f" — FAIL: echoes a server file path ({leak.group(0)[-80:]})"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return False, head + " — FAIL: the 4xx body is not JSON"
        message = (
            body.get("message") or (body.get("error") or {}).get("message") or body.get("detail")
            if isinstance(body, dict)
            else None
        )
        return (True, head) if message else (False, head + " — FAIL: no error message")
    if response.status_code == 200 and "text/event-stream" in response.headers.get("content-type", ""):
        has_error = '"error"' in text or '"object": "error"' in text or '"object":"error"' in text
        return (True, head) if has_error else (False, head + " — FAIL: streamed as if valid")
    if response.status_code >= 500:
        return False, head + " — FAIL: a server error"
    return False, head + " — FAIL: accepted"


def _judge_worker(case: RequestCase, response: httpx.Response) -> tuple[bool, str]:
    raw = response.content
    head = f"{response.status_code} {' '.join(response.text.split())[:160]}"
    if response.status_code >= 500:
        return False, head + " — FAIL: a server error"
    if leak := SERVER_PATH.search(response.text):
        return False, head + f" — FAIL: echoes a server file path ({leak.group(0)[-80:]})"
    if case.path in LENIENT:
        return (True, head) if response.status_code < 500 else (False, head)
    if 400 <= response.status_code < 500:
        return True, head
    frames = [f for f in raw.split(b"\0") if f.strip()]
    try:
        last = json.loads(frames[-1]) if frames else {}
    except ValueError:
        return False, head + " — FAIL: not a FastChat frame"
    if isinstance(last, dict) and last.get("error_code"):
        return True, head
    return False, head + " — FAIL: answered as if valid"


def run_request(stack: HarnessStack, case: RequestCase, baseline: Baseline, victim: str | None) -> Check:
    base = stack.url("api") if case.target == "api" else stack.url("worker")
    busy = stack.queue_length() or 0
    content = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    try:
        response = httpx.request(
            case.method,
            base + case.path,
            content=content,
            headers={"Content-Type": case.content_type},
            timeout=60,
        )
        judge = _judge_api if case.target == "api" else _judge_worker
        ok, observed = judge(case, response)
        if case.accepted and response.status_code == 200:
            ok, observed = True, f"200 ({case.accepted})"
    except httpx.HTTPError as exc:
        ok, observed = False, f"no answer: {describe_error(exc)} — FAIL: dropped connection"
    problems = worker_problems(stack, victim, busy) + baseline.differences()
    if problems:
        ok, observed = False, observed + f" — FAIL: {'; '.join(problems)}"
    return Check("api", case.id, ok, f"{case.target} {case.path}: {case.what}", observed)


def setup_victim(stack: HarnessStack, timeout: float) -> None:
    config = {"model_name": VICTIM, "endpoint_name": VICTIM_ENDPOINT, "endpoint_req_config": tgi_config()}
    put_model(stack.registry(), config, active=True)
    stack.wait_for(lambda: served(stack.model_set(), VICTIM) is not None, timeout)


def run_bad_input(stack: HarnessStack, results: Results, settings: BadInputSettings) -> None:
    setup_victim(stack, 60)
    baseline = Baseline(stack)
    baseline.take()
    results.mark()
    registry = RegistryRunner(stack, results, baseline, settings)
    for case in registry_cases():
        if settings.registry_ids is None or case.id in settings.registry_ids:
            registry.run(case)
    victim = registry.victim_hash()
    for rcase in request_cases():
        if settings.request_ids is None or rcase.id in settings.request_ids:
            results.add(run_request(stack, rcase, baseline, victim))
    final = baseline.differences(REFERENCE_MODELS)
    results.add(
        Check(
            "api" if settings.request_ids != () else "registry",
            "after-all",
            not final and stack.ready_status() == 200,
            "every reference model once more, at the end",
            "byte-identical replies" if not final else "; ".join(final),
        )
    )
