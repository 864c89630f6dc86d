"""The `scaling-study` command line.

Each concern registers its own subcommands (`register(subparsers)` in its `cli` module); handlers
import the heavy libraries (torch, ray, transformers) only when they run, so `--help` is instant.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from scaling_study.errors import UserError

# Module paths whose `register(subparsers)` adds subcommands, in the order `--help` lists them.
_COMMAND_MODULES = (
    "scaling_study.train.cli",     # run
    "scaling_study.tune.cli",      # sweep, submit, jobs
    "scaling_study.reports.cli",   # report, export
    "scaling_study.data.cli",      # data, squad-eval
    "scaling_study.bench",         # bench
    "scaling_study.check",         # check
    "scaling_study.service.cli",   # serve
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scaling-study",
        description="Large-batch BERT optimization and scaling studies on Ray.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module: surface it
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.func(args)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
