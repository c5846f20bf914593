"""The ``tempo`` command. Subcommands import their heavy modules lazily (the gateway has no torch)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tempo", description="Tempo Serve: long-video question answering")
    sub = parser.add_subparsers(dest="command", required=True)

    from models import ask_cli

    ask = sub.add_parser("ask", help="answer one question about one video file")
    ask_cli.add_arguments(ask)
    ask.set_defaults(handler=ask_cli.run)

    args = parser.parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
