"""`scaling-study bench optim|train|asha|sweeps|calibrate|serve|profile`: benchmarks, the calibration
of the generated data, and the device profile a projection takes its compute from.

The training benchmarks print ratios against a baseline run in the same invocation; calibration
prints dev F1 against steps. All of them train through the product's own code
(`TrainState.step`, the job's schedule), never a loop of their own. `serve` runs the real study
service on a synthetic results root and prints its latencies against their targets.
`scaling_study.bench.gpu_check` is the core of `scripts/gpu_check.sh` (no subcommand here).
"""
from __future__ import annotations

import argparse
import importlib

# name -> (module, help). Each module has `add_arguments(parser)` and `main(args)`.
_BENCHES = {
    "optim": ("scaling_study.bench.optim", "optimizer step time over BERT-base's parameters vs AdamW"),
    "train": ("scaling_study.bench.train", "samples/s: plain PyTorch and DDP without Ray vs Ray Train"),
    "asha": ("scaling_study.bench.asha", "ASHA vs full grid: compute spent and best config found"),
    "sweeps": ("scaling_study.bench.sweeps",
               "the mixed 1- and 2-worker ASHA sweep N times: hangs, leaked placement groups, time per sweep"),
    "calibrate": ("scaling_study.bench.calibrate",
                  "dev F1 against steps of one fine-tuning (the generated data's difficulty)"),
    "serve": ("scaling_study.bench.serve",
              "the study service on a large synthetic root: studies list, one study, push latency"),
    "profile": ("scaling_study.bench.profile",
                "a device profile (YAML): samples/s per model and sequence length, optimizer step, "
                "all-reduce bandwidth, for report --device-profile"),
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
    bench = sub.add_parser("bench", help="benchmarks (ratios against a baseline run in the same process) "
                                         "and calibration of the generated data")
    which = bench.add_subparsers(dest="bench", metavar="BENCH")
    which.required = True
    for name, (module_name, help_text) in _BENCHES.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = which.add_parser(name, help=help_text, description=module.__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(func=module.main)
