"""Command-line options that fall back to an environment variable (every setting has both)."""

from __future__ import annotations

import argparse
import os
from typing import Any


def env_default(name: str, default: Any) -> Any:
    """The environment variable's value, converted to the default's type, or the default."""
    value = os.environ.get(name)
    if value is None:
        return default
    return type(default)(value) if default is not None and not isinstance(default, bool) else value


def env_option(
    parser: argparse.ArgumentParser, flag: str, env: str, default: Any, help: str, **kw: Any
) -> None:
    """`--flag` defaulting to `$ENV`, then to `default`; the help names the variable."""
    if default is not None and not isinstance(default, bool) and "type" not in kw:
        kw["type"] = type(default)
    parser.add_argument(flag, default=env_default(env, default), help=f"{help} (${env})", **kw)
