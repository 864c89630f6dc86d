"""`scaling-study bench optim|train|asha`: benchmarks that print ratios against a same-process baseline."""
from __future__ import annotations

import argparse
import importlib

# name -> (module, help). Each module has `add_arguments(parser)` and `main(args)`.
_BENCHES = {
    "optim": ("scaling_study.optim.bench", "optimizer step time over BERT-base's parameters vs AdamW"),
    "train": ("scaling_study.train.bench", "samples/s: plain PyTorch vs Ray Train 1 and 2 workers"),
    "asha": ("scaling_study.tune.bench", "ASHA vs full grid: compute spent and best config found"),
}


def positive_int(text: str) -> int:
    """argparse type for counts: a whole number >= 1 (argparse names the flag in its error)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def register(sub) -> None:
    bench = sub.add_parser("bench", help="performance benchmarks (ratios against a baseline run in the same process)")
    which = bench.add_subparsers(dest="bench", metavar="BENCH")
    which.required = True
    for name, (module_name, help_text) in _BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = which.add_parser(name, help=help_text)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
