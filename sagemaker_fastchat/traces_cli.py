"""`sagemaker-fastchat traces` and `sagemaker-fastchat xray-collector`."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from typing import Any

from sagemaker_fastchat.settings import TracesSettings, add_flags, number_in, settings_from
from telemetry.collector import Collector, build_tree, recent_traces, render


def register(sub: Any) -> None:
    traces = sub.add_parser("traces", help="print recent traces collected by the local stack, as trees")
    traces.add_argument(
        "--last", type=_at_least_one, default=5, help="how many traces (most recent last), at least 1"
    )
    traces.add_argument("--json", action="store_true", help="the raw segments, one trace per line")
    add_flags(traces, TracesSettings)
    traces.set_defaults(handler=cmd_traces)

    collector = sub.add_parser("xray-collector", help="receive X-Ray segments over UDP into a file")
    collector.add_argument("--port", type=int, default=2000)
    add_flags(collector, TracesSettings)
    collector.set_defaults(handler=cmd_collector)


_at_least_one = number_in(int, 1, 1_000_000)  # `--last`: 0 or a negative one printed every trace


def cmd_traces(args: argparse.Namespace) -> int:
    path = settings_from(args, TracesSettings).traces_file()
    found = recent_traces(path, args.last)
    if not found:
        print(f"no traces in {path} (is the local stack up, and has a chat run?)")
        return 0
    for trace_id, segments in found:
        if args.json:
            print(json.dumps({"trace_id": trace_id, "segments": segments}))
            continue
        print(f"trace {trace_id}")
        for root in build_tree(segments):
            print("\n".join("  " + line for line in render(root)))
    return 0


def cmd_collector(args: argparse.Namespace) -> int:
    path = settings_from(args, TracesSettings).traces_file()
    collector = Collector(path, port=args.port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        collector.serve(stop)
    return 0
