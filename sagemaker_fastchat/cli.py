"""`sagemaker-fastchat`: the one console command (docs/design.md "Command line").

Exit codes: 0 success; 1 refused input (one line per problem: model, dotted field, why); 2 usage error;
3 AWS (or the local emulation) cannot be reached, or boto3 has no region or credentials to try.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)
from pydantic import ValidationError

from contract.decoder import StreamDecodeError
from contract.errors import SpecError
from contract.items import InputError, load_items
from contract.spec import ModelSpec, parse_model_item
from sagemaker_fastchat import config_tools, settings

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_READER_GONE = 141  # as a Unix tool killed by SIGPIPE (128 + 13)

Handler = Callable[[argparse.Namespace], int]


def _read(path: str) -> str:
    return config_tools.read_text_file(path, config_tools.MAX_ITEMS_FILE_BYTES)


def _print_json(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False))


def cmd_config_validate(args: argparse.Namespace) -> int:
    report = config_tools.validate_items(load_items(_read(args.file), args.file))
    if args.json:
        _print_json(report.as_json())
    else:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.ok:
            print(f"valid: {len(report.models)} model(s): {', '.join(report.models)}")
    return EXIT_OK if report.ok else EXIT_REFUSED


def _one_spec(path: str, model: str | None) -> ModelSpec:
    """The (chosen) model of a config file, validated."""
    return parse_model_item(config_tools.pick_item(load_items(_read(path), path), model, path))


def cmd_config_request(args: argparse.Namespace) -> int:
    spec = _one_spec(args.file, args.model)
    print(
        json.dumps(
            config_tools.request_body(spec, config_tools.parse_set(args.set)), indent=2, ensure_ascii=False
        )
    )
    return EXIT_OK


def cmd_config_decode(args: argparse.Namespace) -> int:
    spec = _one_spec(args.file, args.model)
    if args.stream in (None, "-"):
        data = sys.stdin.buffer.read()
    else:
        try:
            data = Path(args.stream).read_bytes()
        except OSError as exc:
            raise InputError(f"{args.stream}: cannot read ({exc.strerror})") from None
    failed = False
    for line in config_tools.decode_stream(spec, data, args.part_size, args.stop):
        failed = failed or "error" in line.get("final", {})
        _print_json(line)
    return EXIT_REFUSED if failed else EXIT_OK


def cmd_healthcheck(args: argparse.Namespace) -> int:
    """Container health checks: exit 0 when URL answers 2xx within the timeout."""
    import httpx

    try:
        status = httpx.request(args.method, args.url, timeout=args.timeout).status_code
    except httpx.HTTPError as exc:
        print(f"unhealthy: {args.url}: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    if not 200 <= status < 300:
        print(f"unhealthy: {args.url} answered {status}", file=sys.stderr)
        return EXIT_REFUSED
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sagemaker-fastchat", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    config = sub.add_parser("config", help="offline checks of model configs (no AWS needed)")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    validate = config_sub.add_parser("validate", help="validate an item, a list of items or a registry dump")
    validate.add_argument("file")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")
    validate.set_defaults(handler=cmd_config_validate)

    request = config_sub.add_parser("request", help="print the request body a chat would send")
    request.add_argument("file")
    request.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a FastChat parameter (VALUE parsed as JSON when it parses, else a string)",
    )
    request.add_argument("--model", help="the model to use when FILE holds several")
    request.set_defaults(handler=cmd_config_request)

    decode = config_sub.add_parser("decode", help="decode captured raw payload bytes with a config")
    decode.add_argument("file")
    decode.add_argument(
        "stream", nargs="?", help="raw payload bytes (PayloadParts concatenated); default stdin"
    )
    decode.add_argument("--part-size", type=int, default=0, help="feed the bytes in N-byte parts")
    decode.add_argument("--stop", action="append", help="a stop string to honour (repeatable)")
    decode.add_argument("--model", help="the model to use when FILE holds several")
    decode.set_defaults(handler=cmd_config_decode)

    health = sub.add_parser("healthcheck", help="exit 0 when URL answers 2xx (container health checks)")
    health.add_argument("url")
    health.add_argument("--method", default="GET")
    health.add_argument("--timeout", type=float, default=3.0)
    health.set_defaults(handler=cmd_healthcheck)

    from sagemaker_fastchat import (
        arena_cli,
        launch,
        local_stack,
        models_cli,
        rollout_cli,
        sync_local,
        traces_cli,
        web,
    )
    from sagemaker_fastchat.standin import server as standin

    # Each command module has one `register(sub)` adding its subcommands.
    for module in (
        models_cli,
        arena_cli,
        rollout_cli,
        local_stack,
        launch,
        web,
        standin,
        sync_local,
        traces_cli,
    ):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings.resolve(args)
        result = handler(args)
        sys.stdout.flush()  # a reader gone early shows here, not as "Exception ignored" at exit
        return result
    except BrokenPipeError:
        # The reader of our output went away (`... | head -1`): no traceback; stdout goes nowhere from
        # here, so the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_READER_GONE
    except ValidationError as exc:  # a setting's variable (flags are checked by argparse)
        for line in settings.problems(exc):
            print(f"error: {line}", file=sys.stderr)
        return EXIT_USAGE
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except SpecError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_REFUSED
    except StreamDecodeError as exc:
        print(exc, file=sys.stderr)
        return EXIT_REFUSED
    except NoRegionError:
        print(
            "error: no AWS region is set (export AWS_DEFAULT_REGION, or set one in ~/.aws/config); for the "
            "local stack, paste the lines `sagemaker-fastchat up` prints",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except (
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
        ProfileNotFound,
        ConnectTimeoutError,
    ) as exc:
        print(
            f"error: AWS cannot be reached ({exc}); is the local stack up, or are credentials set?",
            file=sys.stderr,
        )
        return EXIT_UNREACHABLE
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code == "ResourceNotFoundException":
            print(
                f"error: {exc.response['Error'].get('Message', code)} (is the registry table name right?)",
                file=sys.stderr,
            )
            return EXIT_UNREACHABLE
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_REFUSED


if __name__ == "__main__":
    sys.exit(main())
