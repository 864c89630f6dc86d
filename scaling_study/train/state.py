"""Checkpointed training state: model, optimizer, scheduler, data position, RNG and records.

Written into a Ray `Checkpoint` at every evaluation. Rank 0 writes the shared state (model,
optimizer, scheduler, position); every rank writes its own RNG state, and Ray merges the ranks'
directories into one checkpoint. Restoring it puts a restarted worker group exactly where the
last evaluation left off, so no step is trained twice or skipped in the records.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch


@dataclass
class Position:
    """Where training stands; every field survives a restart."""
    phase: int = 0
    step: int = 0
    """Optimizer steps done, counted over all phases."""
    samples: int = 0
    epoch: int = 0
    micro_batch: int = 0
    """Micro-batches this rank has consumed in the current epoch of the current phase."""
    train_time_s: float = 0.0
    wall_time_s: float = 0.0
    records: list[dict] = field(default_factory=list)
    best: float | None = None
    target_reached: bool = False


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save(directory: Path, *, rank: int, model, optimizer, scheduler, scaler, position: Position) -> None:
    """Write this rank's part of a checkpoint into `directory`."""
    directory = Path(directory)
    torch.save(_rng_state(), directory / f"rng_rank{rank}.pt")
    if rank != 0:
        return
    torch.save(model.state_dict(), directory / "model.pt")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None}, directory / "optim.pt")
    (directory / "position.json").write_text(json.dumps(asdict(position), default=float))


def load(directory: Path, *, rank: int, model, optimizer, scheduler, scaler) -> Position:
    """Restore a checkpoint written by `save` (all ranks read the shared state)."""
    directory = Path(directory)
    model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
    opt = torch.load(directory / "optim.pt", map_location="cpu", weights_only=False)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    if scaler is not None and opt.get("scaler"):
        scaler.load_state_dict(opt["scaler"])
    rng = directory / f"rng_rank{rank}.pt"
    if rng.is_file():  # absent when the worker count changed between runs
        _set_rng_state(torch.load(rng, weights_only=False))
    return Position(**json.loads((directory / "position.json").read_text()))
