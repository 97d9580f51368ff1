"""The ``pyleakhunt`` command.

Each subcommand is a small function that adds its arguments and runs.
Exit codes: 0 success, 1 the command ran but found a problem (for ``demo``:
no leak found), 2 bad usage.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional


def cmd_demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.run(sys.stdout, requests=args.requests)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pyleakhunt", description="Hunt memory leaks in Python programs."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.required = True
    demo = commands.add_parser("demo", help="find a leak in a small demo service")
    demo.add_argument(
        "--requests", type=int, default=20_000, help="requests to serve (20000)"
    )
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
