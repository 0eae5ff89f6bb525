"""The ``fiberflow`` command line.

Each subcommand lives in its own module under :mod:`fiberflow.commands` and provides
``register(subparsers)``, which adds its parser and sets ``func`` to the function that runs it.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from fiberflow._version import __version__
from fiberflow.errors import FiberflowError

# Subcommands, in the order ``fiberflow --help`` lists them.
COMMANDS = ["demo", "run", "graph", "bench", "build", "boards", "lint"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiberflow",
        description="Sparse tensor algebra on FPGA fabric, emulated when no board is present.",
    )
    parser.add_argument("--version", action="version", version=f"fiberflow {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"fiberflow.commands.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # Ctrl-C is the user's choice, not a failure to explain: one line, and the shell's
        # status for a process ended by SIGINT (128 + 2).
        print("fiberflow: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (``fiberflow demo | head``): stop quietly, as Unix tools do.
        # stdout is pointed at /dev/null so that Python's flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool ended by the pipe


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FiberflowError as exc:
        print(f"fiberflow {args.command}: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
