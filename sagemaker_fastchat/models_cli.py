"""`sagemaker-fastchat models put|remove|list|rollback|wait`: registry operations through boto3.

Exit codes (docs/design.md): 0 success, 1 refused input or timeout, 2 usage, 3 AWS (or the local
emulation) unreachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import boto3
import httpx

from contract.items import InputError, read_json
from contract.snapshot import SnapshotError, validate_prefix
from sagemaker_fastchat import config_tools, registry_ops, rollout_cli
from sagemaker_fastchat.settings import ModelsSettings, add_flags, number_in
from stores.registry import DynamoRegistry
from stores.ssm import SnapshotReader, SsmParameters

FORCE_HELP = "allow emptying all-models (removing every live model at once)"


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="add, change, remove, list and roll back models (the registry)")
    add_flags(models, ModelsSettings, only=("table", "ssm_prefix"))  # args.table etc.: settings.resolve
    msub = models.add_subparsers(dest="models_command", required=True)

    put = msub.add_parser("put", help="validate and write a model, and list it in all-models")
    put.add_argument("name")
    put.add_argument("--endpoint", required=True, help="SageMaker endpoint name")
    put.add_argument("--config", required=True, help="endpoint_req_config JSON file (or a whole item)")
    put.add_argument("--inactive", action="store_true", help="write the item without listing it")
    put.add_argument("--conv-template", help="FastChat conversation template name")
    put.add_argument("--context-length", type=int)
    put.add_argument("--description")
    put.add_argument(
        "--probe",
        action="store_true",
        help="probe the endpoint with a one-token request before it takes traffic",
    )
    put.set_defaults(handler=cmd_put)

    remove = msub.add_parser("remove", help="unlist a model and delete its item")
    remove.add_argument("name")
    remove.add_argument("--force", action="store_true", help=FORCE_HELP)
    remove.set_defaults(handler=cmd_remove)

    listing = msub.add_parser("list", help="the registry side by side with the live published set")
    listing.add_argument("--json", action="store_true")
    add_flags(listing, ModelsSettings, only=("worker_url",))
    listing.set_defaults(handler=cmd_list)

    back = msub.add_parser("rollback", help="write a past model-set version back into the registry")
    back.add_argument("--to", type=int, required=True, metavar="VERSION")
    back.add_argument("--force", action="store_true", help=FORCE_HELP)
    back.set_defaults(handler=cmd_rollback)

    wait = msub.add_parser("wait", help="wait until model-set VERSION is published (and served locally)")
    wait.add_argument("version", type=number_in(int, 1))  # SSM versions start at 1
    wait.add_argument("--timeout", type=number_in(float, 0, 86_400, "seconds"), default=60.0)  # 0: look once
    add_flags(wait, ModelsSettings, only=("worker_url",))
    wait.set_defaults(handler=cmd_wait)
    rollout_cli.add_models_parser(msub)  # issue 17: `models rollout NAME --endpoint NEW ...`


def _registry(args: argparse.Namespace) -> registry_ops.Registry:
    return registry_ops.Registry(DynamoRegistry(boto3.client("dynamodb"), args.table))


def _reader(args: argparse.Namespace) -> SnapshotReader:
    return SnapshotReader(SsmParameters(boto3.client("ssm")), validate_prefix(args.ssm_prefix))


def cmd_put(args: argparse.Namespace) -> int:
    text = config_tools.read_text_file(args.config, config_tools.MAX_CONFIG_FILE_BYTES)
    config = read_json(text, args.config)
    if not isinstance(config, dict):
        raise InputError(f"{args.config}: expected a JSON object (endpoint_req_config or a whole item)")
    extras = {
        "conv_template": args.conv_template,
        "context_length": args.context_length,
        "description": args.description,
        "probe": args.probe,
    }
    item, spec = registry_ops.build_item(  # an option given is validated, never dropped (0, "")
        args.name, args.endpoint, config, {k: v for k, v in extras.items() if v is not None}
    )
    names = registry_ops.put_model(_registry(args), item, active=not args.inactive)
    state = "listed" if spec.name in names else "written, not listed (inactive)"
    print(f"{spec.name}: {state}; spec hash {spec.hash}; active models: {', '.join(names) or '(none)'}")
    _warn_template(spec.name, not spec.conv_template and "prompt" in spec.request_mapping)
    return 0


def _warn_template(name: str, by_name: bool) -> None:
    """Warn when the prompt's template is left to FastChat's name matching and it recognises nothing."""
    from runtime.fastchat_compat import template_recognised

    if by_name and not template_recognised(name):
        print(
            f"warning: {name}: no conv_template, and FastChat recognises no template from the name: prompts "
            "use plain 'User:'/'Assistant:' turns (set one with --conv-template, e.g. llama-2, mistral)",
            file=sys.stderr,
        )


def cmd_remove(args: argparse.Namespace) -> int:
    existed = registry_ops.remove_model(_registry(args), args.name, force=args.force)
    if not existed:
        print(f"{args.name}: no such model in the registry", file=sys.stderr)
        return 1
    print(f"{args.name}: unlisted and deleted (its published parameters stay in SSM for rollback)")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    published = _reader(args).load_manifest()
    rows = registry_ops.status_rows(_registry(args), published)
    rows = registry_ops.merge_worker_state(rows, _worker_state(args.worker_url))
    version = published.version if published else None
    not_published = published.manifest.not_published if published else ""
    warnings = list(published.manifest.warnings) if published else []
    if args.json:
        doc = {
            "version": version,
            "not_published": not_published or None,
            "warnings": warnings,
            "models": rows,
        }
        print(json.dumps(doc, ensure_ascii=False))
        return 0
    print(f"live model-set version: {version if version is not None else 'none published yet'}")
    if not_published:
        print(f"NOT PUBLISHED: the registry's current state is not served: {not_published}")
    for warning in warnings:
        print(f"warning: {warning}")
    width = max([len(r["model"]) for r in rows] + [5])
    print(f"{'MODEL':<{width}}  {'STATUS':<31}  ENDPOINT")
    for r in rows:
        print(f"{r['model']:<{width}}  {r['status']:<31}  {r['endpoint'] or '-'}")
        if r["reason"]:
            print(f"{'':<{width}}    reason: {r['reason']}")
        if r.get("weights"):
            split = ", ".join(f"{v['endpoint']} {v['weight']:g}%" for v in r["weights"])
            print(f"{'':<{width}}    weights: {split}")
        if r.get("rollout"):
            print(f"{'':<{width}}    rollout: {r['rollout']}")
        for line in registry_ops.variant_lines(r.get("variants")):  # a reachable worker's own view
            print(f"{'':<{width}}    {line}")
        _warn_template(r["model"], r["template_by_name"])
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    try:
        published, specs = registry_ops.rollback(_registry(args), _reader(args), args.to, force=args.force)
    except (SnapshotError, LookupError) as exc:
        print(f"error: cannot roll back to version {args.to}: {exc}", file=sys.stderr)
        return 1
    names = ", ".join(s.name for s in specs) or "(no models)"
    print(f"wrote version {published.version}'s specs back into {args.table}: {names}")
    print("the sync publishes them as a new version; `sagemaker-fastchat models wait` waits for it")
    return 0


def _worker_state(url: str) -> dict[str, Any] | None:
    """A worker's /model-set, or None when it cannot be reached (on AWS workers are not reachable)."""
    try:
        state = httpx.get(f"{url}/model-set", timeout=2).json()
    except (httpx.HTTPError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _worker_version(url: str) -> int | None:
    state = _worker_state(url)
    try:
        return int(state.get("version") or 0) if state is not None else None
    except (ValueError, TypeError):
        return None


def _until(read: Callable[[], int | None], version: int, deadline: float) -> int | None:
    """`read()` until it reaches `version` or the deadline passes; at least once, so a short --timeout
    still reports what is there (and never leaves the value unset)."""
    while True:
        value = read()
        if (value is not None and value >= version) or not time.monotonic() < deadline:  # NaN: at once
            return value
        time.sleep(0.2)


def cmd_wait(args: argparse.Namespace) -> int:
    reader = _reader(args)
    deadline = time.monotonic() + args.timeout
    published = _until(reader.manifest_version, args.version, deadline)
    if published is None or published < args.version:
        print(f"timed out: model-set version is {published}, waiting for {args.version}", file=sys.stderr)
        return 1
    if _worker_version(args.worker_url) is not None:
        served = _until(lambda: _worker_version(args.worker_url), args.version, deadline)
        if served is not None and served >= args.version:
            print(f"version {published} published and served by {args.worker_url}")
            return 0
        print(f"timed out: published {published} but {args.worker_url} serves {served}", file=sys.stderr)
        return 1
    print(f"version {published} published")
    return 0
