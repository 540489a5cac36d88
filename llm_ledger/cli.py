"""The ``llm-ledger`` command."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from llm_ledger import __version__


def _demo(args: argparse.Namespace) -> int:
    from llm_ledger.demo import run_quick_demo

    return asyncio.run(run_quick_demo(seed=args.seed))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="llm-ledger", description="Audited LLM execution for Focal.")
    parser.add_argument("--version", action="version", version=f"llm-ledger {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser(
        "demo", help="run one audited execution on mock models and print its response and events"
    )
    demo.add_argument("--seed", type=int, default=7, help="seed of the mock models' randomness")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("AGNO_TELEMETRY", "false")
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result: int = handler(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
