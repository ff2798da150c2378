"""Command line: ``numbapool demo | list | info NAME``."""

from __future__ import annotations

import argparse
import sys

from .registry import REGISTRY


def _list(_: argparse.Namespace) -> int:
    for name in REGISTRY.names():
        pooler = REGISTRY.get(name)
        print(f"{name:<16} {pooler.summary}  [{pooler.source}]")
    return 0


def _info(args: argparse.Namespace) -> int:
    try:
        pooler = REGISTRY.get(args.name)
    except LookupError as exc:
        print(f"numbapool: {exc}", file=sys.stderr)
        return 2
    print(pooler.describe())
    return 0


def _demo(_: argparse.Namespace) -> int:
    from .demo import main

    return main()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="numbapool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the seed tutorial's examples and a timing line").set_defaults(
        func=_demo)
    sub.add_parser("list", help="registered poolers").set_defaults(func=_list)
    info = sub.add_parser("info", help="describe one pooler")
    info.add_argument("name")
    info.set_defaults(func=_info)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
