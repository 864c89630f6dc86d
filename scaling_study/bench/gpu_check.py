"""The GPU check's core: what `scripts/gpu_check.sh` runs on a machine with a GPU and no Ray.

Each check is a function of a `Context` that returns one line of what it saw, or raises; all of
them go through the product's own code (`build_worker`, `TrainState.step`, `checkpoint.write` /
`read`, the optimizers, `bench optim`), never a loop of their own, and none imports Ray, plotly
or FastAPI (a GPU machine may have none of them, and no package registry either).

    python -m scaling_study.bench.gpu_check gpu                 # driver, CUDA, GPUs; exit 3 with none
    python -m scaling_study.bench.gpu_check plan [--verify-imports]
    python -m scaling_study.bench.gpu_check run NAME --out DIR [--device cuda]

`run` prints its verdict as its last line, ``PASS NAME: ...`` or ``FAIL NAME: ...``; the shell
script gives each check its time budget (`Check.budget_s`) under an overall deadline and appends
each verdict to the summary as it arrives. The bodies are in `scaling_study.bench.gpu_checks`.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scaling_study.bench.gpu_check_context import CheckFailed, Context, check_tokenizer, host_syncs  # noqa: F401

ABSENT_ON_GPU_MACHINES = ("ray", "plotly", "fastapi", "uvicorn", "pytest")
"""What a lent GPU machine lacks: the check's core imports none of them."""
CORE_MODULES = ("scaling_study.bench.gpu_check", "scaling_study.bench.gpu_check_context",
                "scaling_study.bench.gpu_checks", "scaling_study.train.setup",
                "scaling_study.train.state", "scaling_study.train.checkpoint", "scaling_study.train.tasks",
                "scaling_study.train.evaluate", "scaling_study.bench.optim", "scaling_study.bench.train",
                "scaling_study.bench.calibrate", "scaling_study.optim", "scaling_study.models",
                "scaling_study.data.mlm", "scaling_study.data.tokenize", "scaling_study.answers.noise_hooks",
                "scaling_study.cli")


@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[["Context"], str]
    budget_s: int
    """Seconds the shell gives it at most (the deadline may give it less)."""
    what: str


def gpu_report() -> tuple[bool, str]:
    """(whether a CUDA GPU is visible to torch, a line: torch, CUDA, driver, each GPU)."""
    import torch

    line = f"torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}"
    if not torch.cuda.is_available() or torch.cuda.device_count() < 1:
        return False, line + "; torch.cuda.is_available() is False: no visible GPU"
    driver = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=30).stdout.split("\n")[0].strip() or driver
    gpus = ", ".join(f"cuda:{i} {torch.cuda.get_device_name(i)} "
                     f"({torch.cuda.get_device_properties(i).total_memory / 2**30:.0f} GiB)"
                     for i in range(torch.cuda.device_count()))
    return True, f"{line}, driver {driver}; {torch.cuda.device_count()} GPU(s): {gpus}"


def verify_imports() -> str:
    """Import every module of the core in a fresh interpreter where Ray, plotly, FastAPI, uvicorn
    and pytest cannot be imported (as on a lent GPU machine); raise naming what needed them."""
    code = ("import importlib, sys\n"
            f"for m in {ABSENT_ON_GPU_MACHINES!r}: sys.modules[m] = None\n"
            f"for m in {CORE_MODULES!r}: importlib.import_module(m)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    if proc.returncode:
        raise CheckFailed(f"the core needs a module a GPU machine lacks:\n{proc.stderr[-2000:]}")
    return f"{len(CORE_MODULES)} modules import without {', '.join(ABSENT_ON_GPU_MACHINES)}"


def plan() -> list[Check]:
    from scaling_study.bench import gpu_checks as c

    return [Check("squad_bf16_step", c.squad_bf16_step, 45, "SQuAD, bf16, BERT-base: TrainState.step x 30, evaluation"),
            Check("mlm_fp16_step", c.mlm_fp16_step, 45, "MLM, fp16 + GradScaler, BERT-base: TrainState.step x 30"),
            Check("checkpoint_resume", c.checkpoint_resume, 60,
                  "a training process SIGKILLed after checkpoint.write; a new one reads it and steps on alike"),
            Check("no_host_sync", c.no_host_sync, 60,
                  "no host sync in a BERT-base fwd/bwd/step (bf16: none; fp16: the GradScaler's one)"),
            Check("optimizers_cuda_vs_cpu", c.optimizers_cuda_vs_cpu, 30,
                  "LAMB/LANS/LARS: Triton kernels on CUDA vs the CPU's float64 foreach"),
            Check("bench_optim", c.bench_optim, 45, "bench optim --device cuda: LAMB <= 1.5x, LANS <= 2x AdamW(fused)"),
            Check("ddp_nccl_noise_hook", c.ddp_nccl_noise_hook, 30,
                  "a one-rank NCCL process group: DDP with the noise-scale comm hook"),
            Check("bench_train", c.bench_train, 60,
                  "bench train --device cuda --no-ray at base and large: samples/s, MFU")]


def run(name: str, ctx: Context) -> int:
    """Run check `name`; print its verdict as the last line; 0 when it passed."""
    checks = {c.name: c for c in plan()}
    if name not in checks:
        print(f"FAIL {name}: no such check; valid: {', '.join(checks)}")
        return 2
    ctx.out.mkdir(parents=True, exist_ok=True)
    try:
        detail = checks[name].fn(ctx)
    except Exception as exc:  # noqa: BLE001 - any error is this check's failure, reported in one line
        traceback.print_exc()
        print(f"FAIL {name}: {type(exc).__name__}: {' '.join(str(exc).split())[:400]}", flush=True)
        return 1
    print(f"PASS {name}: {detail}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m scaling_study.bench.gpu_check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("gpu", help="print torch, CUDA, driver and GPUs; exit 3 without a visible GPU")
    pl = sub.add_parser("plan", help="one line per check: NAME BUDGET_S WHAT")
    pl.add_argument("--verify-imports", action="store_true",
                    help="first import the core with Ray, plotly, FastAPI, uvicorn and pytest made unimportable")
    r = sub.add_parser("run", help="run one check")
    r.add_argument("name")
    r.add_argument("--out", type=Path, required=True, help="the check's outputs go to OUT/NAME")
    r.add_argument("--device", default="cuda", help="cuda (default), or cpu for the checks that allow it")
    r.add_argument("--model", default="base", help="the BERT size trained (default: base)")
    args = p.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.command == "gpu":
        ok, line = gpu_report()
        print(line)
        return 0 if ok else 3
    if args.command == "plan":
        if args.verify_imports:
            print(f"core imports: ok ({verify_imports()})")
        for c in plan():
            print(f"{c.name} {c.budget_s} {c.what}")
        return 0
    # The shell's `timeout` stops a check with SIGTERM: exit through Python, so that a check's
    # clean-up (the child processes of checkpoint_resume) runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(124))
    return run(args.name, Context(out=args.out / args.name, device=args.device, model=args.model))


if __name__ == "__main__":
    sys.exit(main())
