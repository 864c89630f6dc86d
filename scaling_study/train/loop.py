"""The per-worker training function: `train_fn_per_worker(config)` (Ray Train V2).

Reads top to bottom: turn the config dict into a `Job`; build model, data shard, optimizer and
schedule; restore the latest checkpoint if Ray hands one back; train phase by phase with
gradient accumulation (no all-reduce until the last micro-batch) and global-norm clipping;
evaluate on a schedule; report one record plus a checkpoint at each evaluation.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import ray.train
import ray.train.torch
import torch
import torch.distributed as dist

from scaling_study.config import Job, job_from_dict
from scaling_study.contract import PRIMARY_METRIC
from scaling_study.storage import Loc
from scaling_study.train import state as ckpt_state
from scaling_study.train.records import make_row
from scaling_study.train.setup import Setup, build_setup


def train_fn_per_worker(config: dict) -> None:
    job = job_from_dict(config["job"], source=config.get("source"))
    _quiet_ray_reports()
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(max(1, int(job.scaling.cpus_per_worker)))
    s = build_setup(job, config, rank, world)
    pos = _restore(s, rank, config)
    if pos.phase >= len(s.phases) or pos.target_reached:
        return  # a finished run re-started with the same name: nothing left to train
    _train(job, s, pos, rank, world, config)


def say(message: str) -> None:
    """A progress line from a worker. Ray Train patches `print` to log *and* echo (printed twice);
    writing to the process's own stdout goes through Ray's log forwarding once."""
    sys.__stdout__.write(f"[scaling_study] {message}\n")
    sys.__stdout__.flush()


def _quiet_ray_reports() -> None:
    # Ray Train logs every report's full metrics dict at INFO from a logger named by its file
    # path (outside `ray.train`, so LoggingConfig misses it); the records callback prints one line.
    from ray.train.v2._internal.execution import context

    logging.getLogger(context.__file__).setLevel(logging.WARNING)


def _restore(s: Setup, rank: int, config: dict) -> ckpt_state.Position:
    checkpoint = ray.train.get_checkpoint()
    local = _local_checkpoint_dir(config)
    if checkpoint is None and local is not None and local.is_dir():
        checkpoint = ray.train.Checkpoint(path=local.fs_path, filesystem=local.fs)
    if checkpoint is None:
        return ckpt_state.Position()
    with checkpoint.as_directory() as d:
        pos = ckpt_state.load(Path(d), rank=rank, model=s.module, optimizer=s.optimizer,
                              scheduler=s.scheduler, scaler=s.scaler)
    s.restored = True
    if rank == 0:
        say(f"resumed at phase {pos.phase + 1}, step {pos.step}, {pos.samples} samples")
    return pos


def _train(job: Job, s: Setup, pos: ckpt_state.Position, rank: int, world: int, config: dict) -> None:
    clock = Clock(pos)
    window = Window()
    fault = config.get("fault") or {}
    while pos.phase < len(s.phases):
        phase = s.phases[pos.phase]
        end = s.phase_start[pos.phase] + phase.steps
        batches = s.shard_batches(phase, pos)
        while pos.step < end:
            _maybe_inject_fault(fault, pos, rank, s)
            loss, times = _train_step(s, phase, batches, pos)
            clock.add_train(times["total"])
            pos.step += 1
            pos.samples += phase.global_batch
            window.add(loss, phase.global_batch, times)
            if not math.isfinite(loss):
                _report_divergence(job, s, pos, clock, window, phase, loss, config)
                return
            if rank == 0 and pos.step % s.log_every == 0:
                say(f"step {pos.step}/{s.total_steps} phase {pos.phase + 1} | loss {window.mean_loss():.4f} | "
                    f"{window.throughput():.1f} samples/s")
            last = pos.step == s.total_steps
            if s.eval_due(pos.step, pos.samples, phase) or last:
                if _evaluate_and_report(job, s, pos, clock, window, phase, rank, world, config):
                    return
                window = Window()
        pos.phase += 1
        pos.epoch = pos.micro_batch = 0


def _train_step(s: Setup, phase, batches, pos) -> tuple[float, dict]:
    """One optimizer step over `grad_accum` micro-batches; returns the global mean loss and timings."""
    sync = s.synchronize
    t0 = time.perf_counter()
    loss_sum = torch.zeros((), device=s.device)
    micro_times = []
    for i in range(phase.grad_accum):
        t_micro = time.perf_counter()
        batch = next(batches)
        pos.micro_batch = batch.pop("_position")
        last = i == phase.grad_accum - 1
        # Accumulate locally; DDP all-reduces only on the last micro-batch's backward.
        with (s.model.no_sync() if (not last and s.ddp) else contextlib.nullcontext()):
            with s.autocast():
                loss = s.model(**batch).loss
            s.backward(loss / phase.grad_accum)
        loss_sum += loss.detach().float()
        sync()
        micro_times.append(time.perf_counter() - t_micro)
    t1 = time.perf_counter()
    s.optimizer_step()
    sync()
    t2 = time.perf_counter()
    loss = _global_mean(loss_sum / phase.grad_accum, s)
    return loss, _split(micro_times, t1 - t0, t2 - t1, s.world, time.perf_counter() - t0)


def _split(micro_times, fb_time, opt_time, world, total) -> dict:
    """Compute / exposed all-reduce / optimizer seconds of one step.

    The all-reduce overlaps the last micro-batch's backward, so it is measured as the extra time
    of that micro-batch over the no-sync ones: only when there are some (grad_accum > 1).
    """
    if world == 1:
        allreduce = 0.0
    elif len(micro_times) > 1:
        allreduce = max(0.0, micro_times[-1] - sum(micro_times[:-1]) / (len(micro_times) - 1))
    else:
        allreduce = float("nan")
    compute = fb_time - (allreduce if math.isfinite(allreduce) else 0.0)
    return {"compute": compute, "allreduce": allreduce, "optimizer": opt_time, "total": total}


def _global_mean(loss: torch.Tensor, s: Setup) -> float:
    if s.world > 1:
        loss = loss.clone()
        dist.all_reduce(loss)  # also a NaN flag: one rank's NaN makes every rank stop together
        loss /= s.world
    return float(loss)


def _evaluate_and_report(job, s, pos, clock, window, phase, rank, world, config) -> bool:
    """Evaluate, append a record, report it with a checkpoint. True when the run should stop."""
    s.module.eval()
    metrics = s.task.evaluator.run(s.module, s.device, rank=rank, world=world,
                                   batch_size=s.eval_batch_size, autocast=s.autocast)
    metrics["loss"] = window.mean_loss()  # a target may be on the training loss
    s.module.train()
    target = job.eval.target
    reached = bool(target) and s.target_reached(metrics)
    row = make_row(job, config, phase, pos, clock, window, metrics, lr=s.current_lr(),
                   device=s.device.type, reached=reached)
    pos.records.append(row)
    pos.target_reached = pos.target_reached or reached
    stop = reached and target.stop
    pos.train_time_s, pos.wall_time_s = clock.train, clock.wall()
    _report(row, s, pos, rank, done=stop or pos.step == s.total_steps, config=config)
    if stop and rank == 0:
        say(f"target {target.metric} >= {target.value} reached at step {pos.step}; stopping")
    return stop


def _report(row: dict, s: Setup, pos, rank: int, done: bool, config: dict) -> None:
    # Tune's live table shows the first few numeric metrics of a report: put those first.
    lead = ("samples", PRIMARY_METRIC[row["task"]], "loss", "train_time_s")
    row = {**{k: row[k] for k in lead}, **row}
    def save(d: Path) -> None:
        ckpt_state.save(d, rank=rank, model=s.module, optimizer=s.optimizer,
                        scheduler=s.scheduler, scaler=s.scaler, position=pos)

    if config.get("local"):
        # Local mode (num_workers=0) keeps no storage of its own: keep the latest checkpoint in
        # the run directory, replaced atomically, so a re-run continues from it.
        local = _save_local_checkpoint(Loc(config["run_dir"]), pos.step, save)
        ray.train.report({**row, "finished": done}, checkpoint=ray.train.Checkpoint(path=local.fs_path, filesystem=local.fs))
        return
    with tempfile.TemporaryDirectory() as d:
        save(Path(d))
        ray.train.report({**row, "finished": done}, checkpoint=ray.train.Checkpoint.from_directory(d))


LOCAL_CHECKPOINT = "checkpoint_local"


def _local_checkpoint_dir(config: dict) -> Loc | None:
    """Local mode's latest checkpoint (None outside local mode, or before its first)."""
    return _latest_local_checkpoint(Loc(config["run_dir"])) if config.get("local") else None


def _latest_local_checkpoint(run_dir: Loc) -> Loc | None:
    """RUN_DIR/checkpoint_local, or on an object store (which cannot rename a folder) the folder
    that RUN_DIR/checkpoint_local.txt names."""
    if run_dir.is_local:
        return run_dir / LOCAL_CHECKPOINT
    pointer = run_dir / f"{LOCAL_CHECKPOINT}.txt"
    return run_dir / pointer.read_text().strip() if pointer.is_file() else None


def _save_local_checkpoint(run_dir: Loc, step: int, save) -> Loc:
    if run_dir.is_local:
        local = run_dir.local / LOCAL_CHECKPOINT
        tmp = local.with_name(local.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        save(tmp)
        shutil.rmtree(local, ignore_errors=True)
        tmp.rename(local)
        return run_dir / LOCAL_CHECKPOINT
    # Object store: upload a new folder, then point at it, then drop the old one.
    previous = _latest_local_checkpoint(run_dir)
    target = run_dir / f"{LOCAL_CHECKPOINT}_{step:09d}"
    with tempfile.TemporaryDirectory() as d:
        save(Path(d))
        target.upload_dir(d)
    (run_dir / f"{LOCAL_CHECKPOINT}.txt").write_text(target.name)
    if previous is not None and previous != target and previous.exists():
        previous.fs.delete_dir(previous.fs_path)
    return target


def _report_divergence(job, s, pos, clock, window, phase, loss, config) -> None:
    row = make_row(job, config, phase, pos, clock, window, {}, lr=s.current_lr(),
                   device=s.device.type, reached=False)
    row.update(loss=loss, failed=f"loss became {loss} at step {pos.step}")
    ray.train.report({**row, "finished": True}, checkpoint=None)


def _maybe_inject_fault(fault: dict, pos, rank: int, s: Setup) -> None:
    """Testing hook: SIGKILL one worker at a given step on the first attempt (no checkpoint restored).

    It waits `wait_s` first: Ray Train's controller registers a reported checkpoint when it next
    polls the workers (every 2 s by default), and a worker dead before that loses the report.
    """
    if fault and not s.restored and pos.step == fault.get("step") and rank == fault.get("rank", 0):
        time.sleep(fault.get("wait_s", 5.0))
        os.kill(os.getpid(), signal.SIGKILL)


class Clock:
    """Training time (evaluation excluded) and wall time, both carried across restarts."""

    def __init__(self, pos):
        self.train = pos.train_time_s
        self._wall0 = time.perf_counter() - pos.wall_time_s

    def add_train(self, seconds: float) -> None:
        self.train += seconds

    def wall(self) -> float:
        return time.perf_counter() - self._wall0


class Window:
    """Sums over the steps since the last evaluation."""

    def __init__(self):
        self.loss = self.steps = self.samples = 0
        self.times = {"compute": 0.0, "allreduce": 0.0, "optimizer": 0.0, "total": 0.0}

    def add(self, loss: float, samples: int, times: dict) -> None:
        self.loss += loss
        self.steps += 1
        self.samples += samples
        for k in self.times:
            self.times[k] += times[k]

    def mean_loss(self) -> float:
        return self.loss / self.steps if self.steps else float("nan")

    def throughput(self) -> float:
        return self.samples / self.times["total"] if self.times["total"] > 0 else float("nan")

    def per_step(self, key: str) -> float:
        return self.times[key] / self.steps if self.steps else float("nan")
