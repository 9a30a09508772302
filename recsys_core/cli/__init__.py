"""Command-line interface. Each sub-command lives in its own module exposing
``add_parser(subparsers)`` and ``run(args) -> int``. Exit codes: 0 success, 2 bad input
(a clear message on stderr, never a traceback), 1 unexpected failure."""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ["validate", "train", "recommend", "evaluate", "explain", "score", "report"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys_core", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.endswith(f"cli.{name}"):
                continue  # command not available in this build
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from ..errors import RecScopeError

    try:
        from ..device import configure_cpu_threads

        # Once per process: RECSCOPE_THREADS, else the command's own default, else every core.
        configure_cpu_threads(default=getattr(args, "threads", None))
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(args) or 0)
    except RecScopeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
