"""Decode + map cost per streamed line, as a ratio to a bare `json.loads` of the same line.

Both are timed side by side in one run over the same lines (TGI, OpenAI-SSE and LMI formats).
Target: <= 3x. Run: ./dev bench (or python benchmarks/bench_decode.py).
"""

from __future__ import annotations

import json
import re
import timeit
from importlib import resources

from contract.decoder import StreamDecoder
from contract.spec import parse_model_item
from sagemaker_fastchat.standin import demo

TARGET = 3.0
EXAMPLES = {"tgi": "tgi", "openai": "openai-sse", "lmi": "lmi-jsonlines"}
# The examples' `^data:` patterns take the literal-prefix path; this one is run by RE2 itself.
RE2_PATTERN = {"tgi": r"^data:[ \t]*"}


def main() -> None:
    print("format   lines  json.loads us/line  decode+map us/line  ratio (target <= 3x)")
    worst = 0.0
    cases: list[tuple[str, str, str, str | None]] = [(f, f, example, None) for f, example in EXAMPLES.items()]
    cases += [(f"{fmt}-re2", fmt, EXAMPLES[fmt], pattern) for fmt, pattern in RE2_PATTERN.items()]
    for label, fmt, example, pattern in cases:
        item = json.loads(
            resources.files("sagemaker_fastchat.examples").joinpath(f"{example}.json").read_text()
        )
        if pattern is not None:
            item["endpoint_req_config"]["response"]["regex_sub"] = pattern
        spec = parse_model_item(item)
        p = demo.plan(fmt, "bench", {"inputs": "[[tokens:200]]", "messages": [{"content": "[[tokens:200]]"}]})
        lines = demo.render_lines(fmt, "bench", p)
        data = b"".join(lines)
        # The baseline is what any decoder must do at least: strip the SSE prefix and parse the JSON.
        prefix = re.compile(r"^data:\s*")
        payloads = [prefix.sub("", line.decode()).strip() for line in lines]
        payloads = [s for s in payloads if s and s != "[DONE]"]

        def baseline(payloads: list[str] = payloads) -> None:
            for s in payloads:
                json.loads(s)

        def ours(spec: object = spec, data: bytes = data) -> None:
            decoder = StreamDecoder(spec)  # type: ignore[arg-type]
            for _ in decoder.decode([data]):
                pass

        n = 30
        base = min(timeit.repeat(baseline, number=n, repeat=7)) / n / len(payloads) * 1e6
        mine = min(timeit.repeat(ours, number=n, repeat=7)) / n / len(payloads) * 1e6
        ratio = mine / base
        worst = max(worst, ratio)
        print(f"{label:8} {len(payloads):5}  {base:18.2f}  {mine:18.2f}  {ratio:5.2f}x")
    print(f"worst ratio {worst:.2f}x: {'OK' if worst <= TARGET else 'ABOVE TARGET'}")


if __name__ == "__main__":
    main()
