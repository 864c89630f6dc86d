"""Checkpoints: what one holds, where it is kept, and resuming from the latest.

A checkpoint is a folder written at each evaluation: rank 0 writes the shared state (model,
optimizer, schedule, scaler, the noise scale's averages, position); every rank writes its own RNG
state. Restoring it puts a restarted worker group exactly where that evaluation left off, so no
step is trained twice or skipped. This module is the only one that knows the folder's files.

Where it is kept: with workers, each checkpoint is reported to Ray Train, which merges the
ranks' folders, keeps `output.checkpoints_to_keep` of them in the run directory and hands the
latest back on a restart or a re-run with the same name. Local mode (`num_workers: 0`) has no
controller to do that: the latest lives in RUN_DIR/checkpoint_local, replaced at each evaluation.

`write` and `read` need no Ray (Ray is imported only by `restore` and `report`): the GPU check
resumes through them on machines without Ray.
"""
from __future__ import annotations

import json
import random
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from scaling_study.layout import LOCAL_CHECKPOINT, LOCAL_CHECKPOINT_POINTER
from scaling_study.storage import Loc
from scaling_study.train.state import Clock, Position, TrainState


def restore(cfg, state: TrainState) -> bool:
    """Load the run's latest checkpoint into `state`, if it has one; whether it did."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None and cfg.local:
        local = _latest_local(cfg.run_dir)
        if local is not None and local.is_dir():
            checkpoint = ray.train.Checkpoint(path=local.fs_path, filesystem=local.fs)
    if checkpoint is None:
        return False
    with checkpoint.as_directory() as d:
        read(Path(d), state)
    return True


def report(cfg, state: TrainState, metrics: dict) -> None:
    """`ray.train.report(metrics)` with a checkpoint of `state` (a barrier across workers)."""
    import ray.train

    if cfg.local:
        loc = _save_local(cfg.run_dir, state)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint(path=loc.fs_path, filesystem=loc.fs))
        return
    with tempfile.TemporaryDirectory() as d:
        write(Path(d), state)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(d))


def write(directory: Path, state: TrainState) -> None:
    """Write this rank's part of a checkpoint of `state` into `directory`; its steps must be
    settled (`TrainState.settle`), or the clocks would miss some."""
    if state.unsettled:
        raise RuntimeError(f"checkpoint of a state with {state.unsettled} unsettled step(s): settle() it first")
    state.position.train_time_s, state.position.wall_time_s = state.clock.train, state.clock.wall()
    state.position.world = state.world
    torch.save(capture_rng(state.device), directory / f"rng_rank{state.rank}.pt")
    if state.rank != 0:
        return
    torch.save(state.module.state_dict(), directory / "model.pt")
    torch.save({"optimizer": state.optimizer.state_dict(), "scheduler": state.scheduler.state_dict(),
                "scaler": state.scaler.state_dict() if state.scaler is not None else None,
                "noise": state.noise.state_dict()}, directory / "optim.pt")
    (directory / "position.json").write_text(json.dumps(asdict(state.position), default=float))


def read(directory: Path, state: TrainState) -> None:
    """Restore `state` from a checkpoint written by `write` (every rank reads the shared state)."""
    state.module.load_state_dict(torch.load(directory / "model.pt", map_location=state.device, weights_only=True))
    # On the CPU: the optimizer moves its buffers to its parameters' device itself and keeps the
    # step counts torch.optim keeps on the host there (RAdam's, AdamW's); loaded onto the GPU
    # they would stay there, and reading them would wait for the GPU at every step.
    opt = torch.load(directory / "optim.pt", map_location="cpu", weights_only=False)
    state.optimizer.load_state_dict(opt["optimizer"])
    state.scheduler.load_state_dict(opt["scheduler"])
    if state.scaler is not None and opt.get("scaler"):
        state.scaler.load_state_dict(opt["scaler"])
    if "noise" in opt:  # absent in checkpoints of older versions: the averages start afresh
        state.noise.load_state_dict(opt["noise"])
    rng = directory / f"rng_rank{state.rank}.pt"
    if rng.is_file():  # absent when the worker count changed between runs
        restore_rng(torch.load(rng, weights_only=False), state.device)
    # Written on another worker count (an elastic run resized): the data position is converted.
    state.position = Position.from_dict(json.loads((directory / "position.json").read_text())).on_world(state.world)
    state.clock = Clock(state.position.train_time_s, state.position.wall_time_s)
    state.restored = True


def capture_rng(device: torch.device) -> dict:
    """This process's RNG states: torch's CPU generator, Python's, NumPy's, and on a GPU worker
    its own device's generator (not every visible GPU's: other ranks own those)."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _latest_local(run_dir: Loc) -> Loc | None:
    """RUN_DIR/checkpoint_local, or on an object store (which cannot rename a folder) the folder
    that RUN_DIR/checkpoint_local.txt names; None before the first."""
    if run_dir.is_local:
        return run_dir / LOCAL_CHECKPOINT
    pointer = run_dir / LOCAL_CHECKPOINT_POINTER
    return run_dir / pointer.read_text().strip() if pointer.is_file() else None


def _save_local(run_dir: Loc, state: TrainState) -> Loc:
    """Write local mode's checkpoint in place of the previous one, all at once."""
    if run_dir.is_local:
        final = run_dir.local / LOCAL_CHECKPOINT
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        write(tmp, state)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return run_dir / LOCAL_CHECKPOINT
    # Object store: upload a new folder, then point at it, then drop the old one.
    previous = _latest_local(run_dir)
    target = run_dir / f"{LOCAL_CHECKPOINT}_{state.position.step:09d}"
    with tempfile.TemporaryDirectory() as d:
        write(Path(d), state)
        target.upload_dir(d)
    (run_dir / LOCAL_CHECKPOINT_POINTER).write_text(target.name)
    if previous is not None and previous != target and previous.exists():
        previous.fs.delete_dir(previous.fs_path)
    return target
