"""A local stand-in for the X-Ray daemon: receives segments over UDP exactly as the SDK sends them to the
daemon, and appends them to a JSON-lines file that `sagemaker-fastchat traces` reads (pure helpers for
building and printing trace trees are below)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def parse_datagram(data: bytes) -> dict[str, Any] | None:
    """The daemon protocol: a JSON header line (`{"format": "json", "version": 1}`), then the segment."""
    header, _, body = data.partition(b"\n")
    try:
        if json.loads(header).get("format") != "json":
            return None
        doc = json.loads(body)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class Collector:
    def __init__(self, path: Path, host: str = "127.0.0.1", port: int = 2000) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.5)
        self._lock = threading.Lock()

    def serve(self, stop: threading.Event) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            while not stop.is_set():
                try:
                    data = self.sock.recv(65536)
                except TimeoutError:
                    continue
                doc = parse_datagram(data)
                if doc is not None:
                    with self._lock:
                        out.write(json.dumps(doc) + "\n")
                        out.flush()
        self.sock.close()


def read_segments(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    docs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            docs.append(json.loads(line))
        except ValueError:
            continue
    return docs


def group_traces(segments: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    traces: dict[str, list[dict[str, Any]]] = {}
    for seg in segments:
        traces.setdefault(str(seg.get("trace_id")), []).append(seg)
    return traces


def build_tree(segments: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Nest segments under the segment or subsegment whose id is their parent_id; returns the roots."""
    nodes: dict[str, dict[str, Any]] = {}

    def index(node: dict[str, Any]) -> None:
        node.setdefault("children", list(node.get("subsegments", [])))
        nodes[str(node.get("id"))] = node
        for sub in node["children"]:
            index(sub)

    for seg in segments:
        index(seg)
    roots = []
    for seg in sorted(segments, key=lambda s: s.get("start_time", 0)):
        parent = nodes.get(str(seg.get("parent_id")))
        if parent is not None and parent is not seg:
            parent["children"].append(seg)
        else:
            roots.append(seg)
    return roots


def _duration_ms(node: dict[str, Any]) -> float:
    return (float(node.get("end_time", node.get("start_time", 0))) - float(node.get("start_time", 0))) * 1000


def render(node: dict[str, Any], depth: int = 0) -> list[str]:
    notes = [f"{k}={v}" for k, v in sorted((node.get("annotations") or {}).items())]
    meta = (node.get("metadata") or {}).get("sagemaker-fastchat") or {}
    notes += [f"{k}={v}" for k, v in sorted(meta.items())]
    if node.get("fault") or node.get("error"):
        notes.append("FAULT")
    line = f"{'  ' * depth}{node.get('name')}  {_duration_ms(node):.1f} ms"
    lines = [line + ("  " + " ".join(notes) if notes else "")]
    for child in sorted(node.get("children", []), key=lambda c: c.get("start_time", 0)):
        lines += render(child, depth + 1)
    return lines


def recent_traces(path: Path, last: int) -> list[tuple[str, list[dict[str, Any]]]]:
    traces = group_traces(read_segments(path))
    ordered = sorted(traces.items(), key=lambda kv: min(s.get("start_time", 0) for s in kv[1]))
    return ordered[-last:] if last > 0 else ordered
