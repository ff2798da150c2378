"""Command line: ``numbapool demo | list | info NAME | plugins | check NAME [--target cuda]``."""

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


def _plugins(_: argparse.Namespace) -> int:
    for plugin in REGISTRY.plugins():
        names = [n for n in REGISTRY.names() if REGISTRY.get(n).source == plugin]
        print(f"{plugin}: {', '.join(names) or '(no poolers)'}")
    failures = REGISTRY.failures()
    for f in failures:
        print(f"FAILED {f.plugin} ({f.stage}): {f.error}")
    return 1 if failures else 0


def _check(args: argparse.Namespace) -> int:
    from .testing import check, check_cuda

    try:
        if args.target == "cuda":
            report = check_cuda(args.name, ranks=args.ranks)
        else:
            report = check(args.name, ranks=args.ranks)
    except LookupError as exc:
        print(f"numbapool: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0 if report.ok else 1


def _demo(_: argparse.Namespace) -> int:
    from .demo import main

    return main()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:  # its own options
        from .bench import main as bench_main

        return bench_main(argv[1:])
    parser = argparse.ArgumentParser(prog="numbapool", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="the seed tutorial's examples and a timing line").set_defaults(
        func=_demo)
    sub.add_parser("list", help="registered poolers").set_defaults(func=_list)
    info = sub.add_parser("info", help="describe one pooler")
    info.add_argument("name")
    info.set_defaults(func=_info)
    sub.add_parser("plugins", help="loaded plugins, their poolers, and failures").set_defaults(
        func=_plugins)
    chk = sub.add_parser("check", help="run the conformance kit on a pooler")
    chk.add_argument("name")
    chk.add_argument("--ranks", type=int, nargs="+", default=[1, 2, 3],
                     help="spatial ranks to check (default: 1 2 3)")
    chk.add_argument("--target", choices=["cpu", "cuda"], default="cpu",
                     help="cuda: compare the CUDA target with the CPU (on a GPU, or under "
                     "NUMBA_ENABLE_CUDASIM=1)")
    chk.set_defaults(func=_check)
    sub.add_parser("bench", help="time against PyTorch and the memory roofline "
                   "(numbapool bench --help)")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
