"""The per-worker training function: `train_fn_per_worker(config)` (Ray Train V2).

Reads top to bottom: parse the worker config; build data, plan and training state; restore the
latest checkpoint; train phase by phase, one optimizer step at a time; evaluate on the plan's
steps and report one record with a checkpoint each time; stop at the target or on divergence.
The loss is read (and checked for divergence) every `log_every` steps and at each evaluation,
not at every step: a GPU worker's host never waits for its GPU in between.
"""
from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import ray.train

from scaling_study.compat import quiet_ray_train_report_logger
from scaling_study.contract import METRICS, PRIMARY_METRIC
from scaling_study.layout import TRAIN_LOG
from scaling_study.storage import Loc
from scaling_study.train import checkpoint
from scaling_study.train.records import append_record, make_row, truncate_records
from scaling_study.train.setup import Plan, build
from scaling_study.train.state import TrainState, Window
from scaling_study.train.tasks import TaskData
from scaling_study.train.worker_config import WorkerConfig


def train_fn_per_worker(config: dict) -> None:
    cfg = WorkerConfig.from_dict(config)
    quiet_ray_train_report_logger()
    ctx = ray.train.get_context()
    state, task, plan = build(cfg, ctx.get_world_rank(), ctx.get_world_size())
    log_to(cfg.run_dir if state.rank == 0 else None)
    if checkpoint.restore(cfg, state) and state.rank == 0:
        pos = state.position
        say(f"resumed at phase {pos.phase + 1}, step {pos.step}, {pos.samples} samples")
    if state.rank == 0:  # rows of steps this run trains again are rewritten when it reaches them
        truncate_records(cfg.run_dir, state.position.step)
    if state.position.stopped or state.position.step >= plan.total_steps:
        return  # a finished run re-started with the same name: nothing left to train
    train(cfg, state, task, plan)


def train(cfg: WorkerConfig, state: TrainState, task: TaskData, plan: Plan) -> None:
    pos = state.position
    while pos.phase < len(plan.phases):
        phase = plan.phases[pos.phase]
        batches = task.micro_batches(phase, rank=state.rank, world=state.world, seed=cfg.job.train.seed,
                                     device=state.device, epoch=pos.epoch, consumed=pos.micro_batch)
        while pos.step < plan.end(pos.phase):
            if cfg.before_step is not None:
                cfg.before_step(state)
            state.step(phase, batches)
            evaluates = pos.step in plan.evals
            if (evaluates or pos.step % cfg.log_every == 0) and diverged(cfg, state, phase):
                return
            if state.rank == 0 and pos.step % cfg.log_every == 0:
                say(f"step {pos.step}/{plan.total_steps} phase {pos.phase + 1} | loss {state.window.mean_loss():.4f} "
                    f"| {state.window.throughput():.1f} samples/s")
            if evaluates:
                if evaluate_and_report(cfg, state, task, phase, last=pos.step == plan.last_eval):
                    return
                state.window = Window()
        pos.phase += 1
        pos.epoch = pos.micro_batch = 0
    if state.unsettled:  # steps after the last evaluation (eval.at_end: false) must not diverge either
        diverged(cfg, state, plan.phases[-1])


def evaluate_and_report(cfg: WorkerConfig, state: TrainState, task: TaskData, phase, *, last: bool) -> bool:
    """Evaluate, report the record with a checkpoint; True when the run stops at its target.
    `last`: the plan's last evaluation."""
    state.module.eval()
    metrics = task.evaluator.run(state.module, state.device, rank=state.rank, world=state.world,
                                 autocast=state.autocast)
    state.module.train()
    metrics["loss"] = state.window.mean_loss()  # a target may be on the training loss
    target = cfg.job.eval.target
    reached = target is not None and target_reached(target, metrics)
    state.position.stopped = reached and target.stop
    row = make_row(cfg.job, phase, state, metrics, trial_id=cfg.trial_id, reached=reached)
    report(cfg, state, row, done=state.position.stopped or last)
    if state.position.stopped and state.rank == 0:
        say(f"target {target.metric} {target.value} reached at step {state.position.step}; stopping")
    return state.position.stopped


def diverged(cfg: WorkerConfig, state: TrainState, phase) -> bool:
    """Settle the steps since the last check (`TrainState.settle`: every rank, every
    `log_every` steps and before each evaluation); when their loss is not finite, report that
    (no checkpoint: the state is lost) and return True: the run stops."""
    first = state.position.step - state.unsettled + 1
    loss = state.settle()
    if math.isfinite(loss):
        return False
    row = make_row(cfg.job, phase, state, {}, trial_id=cfg.trial_id)
    row["loss"] = loss
    steps = f"step {first}" if first == state.position.step else f"steps {first}-{state.position.step}"
    report(cfg, state, row, done=True,
           failed=f"loss became {loss} in {steps} (checked every {cfg.log_every} steps and at each evaluation)")
    return True


def report(cfg: WorkerConfig, state: TrainState, row: dict, *, done: bool, failed: str = "") -> None:
    """Report `row` (with a checkpoint unless the run failed); in local mode also record it, as
    Ray Train calls no callbacks there. `finished` tells Tune this is the run's last report."""
    # Tune's live table shows the first few numeric metrics of a report: put those first.
    lead = ("samples", PRIMARY_METRIC[row["task"]], "loss", "train_time_s")
    metrics = {**{k: row[k] for k in lead}, **row, "finished": done, **({"failed": failed} if failed else {})}
    if failed:
        ray.train.report(metrics, checkpoint=None)
    else:
        checkpoint.report(cfg, state, metrics)
    if cfg.local:  # after its checkpoint, as on the controller
        append_record(cfg.run_dir, row, verbose=cfg.verbose)


def target_reached(target, metrics: dict) -> bool:
    value = metrics.get(target.metric)
    return value is not None and math.isfinite(value) and METRICS[target.metric].reached(value, target.value)


_LOG: list[Path] = []  # the run's TRAIN_LOG, on rank 0 of a run in a local folder


def log_to(run_dir) -> None:
    """Where `say` also appends its lines: `run_dir`'s TRAIN_LOG when it is a local folder (None:
    nowhere, as on ranks other than 0)."""
    loc = Loc(run_dir) if run_dir is not None else None
    _LOG[:] = [loc.local / TRAIN_LOG] if loc is not None and loc.is_local else []


def say(message: str) -> None:
    """A progress line from a worker. Ray Train patches `print` to log *and* echo (printed twice);
    writing to the process's own stdout goes through Ray's log forwarding once. Rank 0 also keeps
    it in the run's own log (`log_to`), which the study service shows on the trial's page."""
    line = f"[scaling_study] {message}\n"
    sys.__stdout__.write(line)
    sys.__stdout__.flush()
    for path in _LOG:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as f:
            f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {line}")
