"""`./dev reliability [ARGS]` (python -m benchmarks.reliability): start a local stack on free ports, run
the swap-under-load, bad-input and fault checks, print a markdown table, optionally write it to
docs/reliability.md (--write-doc) and the raw results as JSON (--json). Exit 0 when every target is met.

Profiles: `full` (the issue's numbers: 64 streams, 50 writes, 60 s SSM outages; about 15-20 minutes) and
`ci` (a few streams, writes and seconds; what tests/reliability/ runs in `./dev test`).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

from benchmarks.reliability.bad_input import BadInputSettings, run_bad_input, setup_victim
from benchmarks.reliability.cases import CI_FAULTS, CI_REGISTRY, CI_REQUESTS
from benchmarks.reliability.fault_proxy import FaultProxy
from benchmarks.reliability.faults import FaultRunner, FaultSettings
from benchmarks.reliability.report import Results, markdown
from benchmarks.reliability.stack import HarnessStack, new_workdir
from benchmarks.reliability.swap import SwapSettings, run_swap
from tests.helpers import free_port

SECTIONS = ("swap", "bad-input", "faults")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="./dev reliability", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--profile", choices=("full", "ci"), default="full")
    p.add_argument(
        "--only", default=",".join(SECTIONS), help=f"comma-separated sections of {', '.join(SECTIONS)}"
    )
    p.add_argument("--streams", type=int, help="concurrent streams in the swap (full 64, ci 16)")
    p.add_argument("--writes", type=int, help="registry writes in the swap (full 50, ci 8)")
    p.add_argument("--write-interval", type=float, help="seconds between swap writes (full 1.0, ci 0.5)")
    p.add_argument("--ssm-window", type=float, help="seconds each SSM fault lasts (full 60, ci 5)")
    p.add_argument("--ttft", type=float, help="seconds the silent endpoint waits (full 150, ci 20)")
    p.add_argument("--client-timeout", type=float, help="the client's timeout in that case (full 200, ci 60)")
    p.add_argument(
        "--converge-timeout", type=float, help="seconds a fault may take to converge (full 120, ci 60)"
    )
    p.add_argument("--fault", action="append", help="run only this fault (repeatable)")
    p.add_argument("--case", action="append", help="run only this bad-input case id (repeatable)")
    p.add_argument(
        "--worker-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra worker environment (ci: SAGEMAKER_FIRST_TOKEN_TIMEOUT=5 SAGEMAKER_READ_TIMEOUT=10 "
        "AWS_MAX_ATTEMPTS=2, to fail fast)",
    )
    p.add_argument(
        "--write-doc", metavar="PATH", help="write the markdown results there (e.g. docs/reliability.md)"
    )
    p.add_argument("--json", metavar="PATH", help="write the raw results as JSON")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    full = args.profile == "full"
    sections = [s.strip() for s in args.only.split(",") if s.strip()]
    worker_env = dict(kv.split("=", 1) for kv in args.worker_env)
    if not full:  # short windows need fast failures: a silent endpoint, an SSM outage (botocore's retries)
        worker_env.setdefault("SAGEMAKER_FIRST_TOKEN_TIMEOUT", "5")  # the worker's clear 504 comes first
        worker_env.setdefault("SAGEMAKER_READ_TIMEOUT", "10")
        worker_env.setdefault("AWS_MAX_ATTEMPTS", "2")
    swap = SwapSettings(
        streams=args.streams or (64 if full else 16),
        writes=args.writes or (50 if full else 8),
        write_interval=args.write_interval or (1.0 if full else 0.5),
    )
    faults = FaultSettings(
        ssm_window=args.ssm_window or (60.0 if full else 5.0),
        converge_timeout=args.converge_timeout or (120.0 if full else 60.0),
        streams=8 if full else 4,
        ttft=args.ttft or (150.0 if full else 20.0),
        client_timeout=args.client_timeout or (200.0 if full else 60.0),
        only=tuple(args.fault) if args.fault else (None if full else CI_FAULTS),
    )
    cases = tuple(args.case) if args.case else None
    bad = BadInputSettings(
        registry_ids=cases or (None if full else CI_REGISTRY),
        request_ids=cases or (None if full else CI_REQUESTS),
        settle_timeout=10.0 if full else 6.0,
    )
    workdir = new_workdir()
    proxy_port = free_port()
    stack = HarnessStack(workdir, worker_env=worker_env, ssm_proxy_port=proxy_port)
    proxy = FaultProxy(stack.moto_url, proxy_port)
    results = Results(args.profile)
    command = "./dev reliability " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
    )
    began = time.monotonic()
    print(f"reliability harness ({args.profile}): stack logs in {workdir / 'stack.log'}", flush=True)
    proxy.start()
    try:
        stack.start()
        setup_victim(stack, 60)
        if "swap" in sections:
            run_swap(stack, results, swap)
        if "bad-input" in sections:
            run_bad_input(stack, results, bad)
        if "faults" in sections:
            FaultRunner(stack, results, faults, proxy).run_all()
    finally:
        stack.stop()
        proxy.stop()
    results.metrics["harness: wall time"] = f"{time.monotonic() - began:.0f} s"
    text = markdown(results, command.strip())
    print()
    print(text)
    if args.write_doc:
        Path(args.write_doc).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_doc).write_text(text, encoding="utf-8")
    if args.json:
        Path(args.json).write_text(json.dumps(results.to_json(), indent=1), encoding="utf-8")
    return 0 if all(c.ok for c in results.checks) else 1


if __name__ == "__main__":
    sys.exit(main())
