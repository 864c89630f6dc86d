"""What the driver tells each worker: one typed `WorkerConfig`.

Ray Train hands `train_loop_config` to the worker function as a dict, so the driver sends
`WorkerConfig.to_dict()` and the worker's first line is `WorkerConfig.from_dict(config)`: the job
is checked again on the worker, and nothing travels as an untyped key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scaling_study.config import Job, job_from_dict
from scaling_study.config.schema import to_dict
from scaling_study.layout import run_dir_of
from scaling_study.storage import Loc
from scaling_study.train.tasks import DataFiles


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    job: Job
    files: DataFiles
    """The train and dev files, resolved (and generated) by the driver before any worker starts."""
    trial_id: str = ""
    """The Tune trial id of a sweep's run; empty for a single run."""
    log_every: int = 10
    """Every this many optimizer steps, every rank reads its loss back from the device (one wait,
    one all-reduce: see `TrainState.settle`) and stops on a NaN or inf, and rank 0 prints a
    progress line; evaluations read it too."""
    verbose: bool = True
    """Print one line per evaluation (the records callback's, or local mode's own)."""
    before_step: Callable[[Any], None] | None = None
    """For tests only: called on every worker with its `TrainState` before each optimizer step
    (a fault injector kills a worker there). It travels to the workers pickled by value."""

    @property
    def run_id(self) -> str:
        return self.job.name

    @property
    def run_dir(self) -> Loc:
        """`output.dir/name`: records.csv, job.yaml and checkpoints (a local folder or a URI)."""
        return run_dir_of(Loc(self.job.output.dir), self.job.name)

    @property
    def local(self) -> bool:
        """Local mode (`scaling.num_workers: 0`): one rank in the driver's process, where Ray Train
        keeps no checkpoints and calls no callbacks."""
        return self.job.scaling.num_workers == 0

    def to_dict(self) -> dict:
        return {"job": to_dict(self.job), "trial_id": self.trial_id, "log_every": self.log_every,
                "verbose": self.verbose, "before_step": self.before_step,
                "files": {"train": [str(p) for p in self.files.train], "dev": [str(p) for p in self.files.dev]}}

    @classmethod
    def from_dict(cls, data: dict) -> "WorkerConfig":
        files = DataFiles(**{k: [Path(p) for p in v] for k, v in data["files"].items()})
        return cls(job=job_from_dict(data["job"]), files=files, trial_id=data["trial_id"],
                   log_every=data["log_every"], verbose=data["verbose"], before_step=data["before_step"])
