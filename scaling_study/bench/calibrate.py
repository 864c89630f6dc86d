"""`scaling-study bench calibrate`: calibrate the generated SQuAD's difficulty: fine-tune once,
print dev F1 against steps.

    scaling-study bench calibrate --difficulty 0.0 --steps 250 --batch 32

Fine-tunes a job (default: the quickstart's) as one worker in this process, without Ray, through
the code Ray Train's workers run: the same build (`train.setup.build_worker`), the product's
step (`TrainState.step`: accumulation, clipping, optimizer), the job's optimizer and LR schedule
(`schedule.name`, `schedule.warmup`, the LR rule) and its evaluation (the same features,
post-processing and official metric). The flags below set the job's keys they name; `--set`
sets any other. Generated data goes where the job's runs find it (`data.dir`).

Prints one JSON line per evaluation (the plan's, and one at step 0), so that runs compare by
steps: on a shared machine seconds are noisy.
"""
from __future__ import annotations

import json
import math

from scaling_study.bench import positive_int
from scaling_study.errors import UserError

# flag -> (type, metavar, the job keys it sets, help); "{}" in a key's value is the flag's value.
FLAGS = {
    "--difficulty": (float, "X", ["data.synth.difficulty={}"], "generated data's difficulty, 0 to 1"),
    "--data": (str, "DIR", ["data.train={}/train.json", "data.dev={}/dev.json"],
               "a folder with train.json and dev.json, instead of the job's data"),
    "--model": (str, "SPEC", ["model.name={}"], "model spec"),
    "--steps": (positive_int, "N", ["train.steps={}"], "optimizer steps"),
    "--batch": (positive_int, "N", ["train.per_worker_batch={}", "train.global_batch={}", "train.grad_accum=null"],
                "samples per optimizer step, in one micro-batch"),
    "--lr": (float, "LR", ["optimizer.lr={}"], "peak LR at schedule.reference_batch (the job's LR rule applies)"),
    "--warmup": (float, "W", ["schedule.warmup={}"], "warmup of the job's schedule: a fraction of the steps, or steps"),
    "--eval-every": (positive_int, "N", ["eval.every_steps={}", "eval.every_samples=null"], "evaluate every N steps"),
    "--n-train": (positive_int, "N", ["data.synth.train={}"], "generated training questions"),
    "--n-dev": (positive_int, "N", ["data.synth.dev={}", "data.max_eval_examples=null"],
                "generated dev questions, all evaluated"),
    "--seq-len": (positive_int, "N", ["model.max_seq_length={}"], "sequence length"),
    "--doc-stride": (positive_int, "N", ["data.doc_stride={}"], "context tokens two windows share"),
    "--max-query-length": (positive_int, "N", ["data.max_query_length={}"], "question tokens kept at most"),
    "--seed": (int, "N", ["train.seed={}", "data.synth.seed={}"], "seed of the model, data order and generated data"),
    "--threads": (positive_int, "N", ["scaling.cpus_per_worker={}"], "torch threads"),
}
LOCAL = "scaling.num_workers=0"
"""One rank in this process: the batch arithmetic of a local run (global = per-worker x accumulation)."""


def add_arguments(p) -> None:
    p.add_argument("--job", default="jobs/quickstart.yaml", help="the job to fine-tune (default: %(default)s)")
    for flag, (kind, metavar, keys, help_text) in FLAGS.items():
        p.add_argument(flag, type=kind, metavar=metavar, default=None,
                       help=f"{help_text} (sets {', '.join(k.split('=')[0] for k in keys)})")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any other key of the job (repeatable; applied after the flags)")


def calibration_job(args):
    """The job to fine-tune: `--job` with the flags' keys, then `--set`, as one local worker."""
    from scaling_study.config import load_job

    overrides, labels = [LOCAL], {LOCAL: "bench calibrate (one worker in this process)"}
    for flag, (_, _, keys, _) in FLAGS.items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            items = [k.format(value) for k in keys]
            overrides += items
            labels.update({item: f"{flag} {value}" for item in items})
    job = load_job(args.job, [*overrides, *args.overrides], labels)
    if job.task != "squad":
        raise UserError(f"{args.job}: task: {job.task!r}; bench calibrate fine-tunes for SQuAD F1 (valid: squad)")
    return job


def _device(job):
    import torch

    if not job.scaling.use_gpu:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"scaling.use_gpu: true, and torch {torch.__version__} sees no CUDA device here; "
                        "valid here: false")
    return torch.device("cuda", 0)


def evaluation(state, task) -> dict:
    """One JSON line's fields: where training stands, the loss since the last line, dev EM/F1."""
    state.module.eval()
    metrics = task.evaluator.run(state.module, state.device, rank=0, world=1, autocast=state.autocast)
    state.module.train()
    pos, loss = state.position, state.window.mean_loss()
    return {"step": pos.step, "samples": pos.samples, "train_s": round(state.clock.train, 1),
            "loss": round(loss, 4) if math.isfinite(loss) else None, "lr": state.lr,
            **{k: round(v, 2) for k, v in metrics.items()}}


def main(args) -> int:
    from scaling_study.train.setup import build_worker
    from scaling_study.train.state import Window
    from scaling_study.train.tasks import resolve_data_files

    job = calibration_job(args)
    state, task, plan = build_worker(job, resolve_data_files(job), rank=0, world=1, device=_device(job))
    synth = job.data.synth if job.data.train is None else None
    print(json.dumps({"difficulty": synth and synth.difficulty, "model": job.model.name,
                      "optimizer": job.optimizer.name, "schedule": job.schedule.name,
                      "train_features": len(task.train_sets[plan.phases[0].seq_len]),
                      "dev_questions": len(task.evaluator.examples), "dev_features": len(task.evaluator.dataset)}),
          flush=True)
    print(json.dumps(evaluation(state, task)), flush=True)
    for phase in plan.phases:
        batches = task.micro_batches(phase, rank=0, world=1, seed=job.train.seed, device=state.device)
        while state.position.step < plan.end(phase.index):
            loss = state.step(phase, batches)
            if not math.isfinite(loss):
                raise UserError(f"loss became {loss} at step {state.position.step} (lr {state.lr:.3g}); "
                                "lower --lr, raise --warmup or set train.max_grad_norm")
            if state.position.step in plan.evals:
                print(json.dumps(evaluation(state, task)), flush=True)
                state.window = Window()
    return 0
