"""The driver: one `Job` -> one Ray Train `TorchTrainer` run -> records.

Used as is by `scaling-study run`, and as the Tune trainable for sweeps (one trial = one run).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling_study.config import Job, dump_job
from scaling_study.errors import UserError
from scaling_study.layout import JOB_FILE, RECORDS, RECORDS_PARQUET, run_dir_of
from scaling_study.storage import Loc, as_path, write_parquet
from scaling_study.train.resources import per_worker_resources


@dataclass
class RunResult:
    run_dir: Path | Loc
    """A `Path` for a local folder, a `Loc` for a URI (both have `/`, `name`, `is_file`, ...)."""
    records: pd.DataFrame
    metrics: dict
    checkpoint: str | None


class RunFailed(UserError):
    """The run ended in an error (after Ray's retries) or diverged."""


def job_run_dir(job: Job) -> Loc:
    """`output.dir/name` of `job` (`layout.run_dir_of`): an absolute local path, or a URI."""
    return run_dir_of(Loc(job.output.dir), job.name)


def build_trainer(job: Job, files, *, trial_id: str = "", callbacks=(), verbose: bool = True,
                  log_every: int = 10, before_step=None):
    """The `TorchTrainer` for `job`; its records and checkpoints go to `output.dir/name/`.

    `before_step` is for tests only (see `WorkerConfig.before_step`)."""
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    from scaling_study import compat
    from scaling_study.train import placement
    from scaling_study.train.loop import train_fn_per_worker
    from scaling_study.train.records import RecordsCallback
    from scaling_study.train.tasks import DataFiles
    from scaling_study.train.worker_config import WorkerConfig

    run_dir = job_run_dir(job)
    files = DataFiles([p.resolve() for p in files.train], [p.resolve() for p in files.dev])
    config = WorkerConfig(job=job, files=files, trial_id=trial_id, log_every=log_every, verbose=verbose,
                          before_step=before_step)
    s = job.scaling
    return TorchTrainer(
        train_fn_per_worker,
        train_loop_config=config.to_dict(),
        torch_config=TorchConfig(timeout_s=s.process_group_timeout_s),
        scaling_config=ray.train.ScalingConfig(
            # [MIN, MAX]: Ray Train's elastic worker group (a restart at each change of size)
            num_workers=(s.min_workers, s.max_workers) if s.elastic else s.num_workers,
            elastic_resize_monitor_interval_s=s.elastic_resize_interval_s,
            use_gpu=s.use_gpu, resources_per_worker=per_worker_resources(job)),
        run_config=ray.train.RunConfig(
            name=job.name, storage_path=str(run_dir.parent),  # a URI: Ray writes checkpoints through pyarrow.fs
            # A bounded wait for room for the workers (scaling.placement_timeout_s), not Ray's endless one.
            failure_config=ray.train.FailureConfig(
                max_failures=job.output.max_failures,
                controller_failure_limit=placement.controller_failure_limit(s.placement_timeout_s)),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=job.output.checkpoints_to_keep),
            callbacks=[RecordsCallback(str(run_dir), verbose=verbose), *callbacks,
                       # Ray Train would wait for ever for an elastic run's fewest workers once the
                       # cluster holds fewer (a lost node): bounded as a fixed run's placement is.
                       *([compat.elastic_wait_limit(s.placement_timeout_s, s.min_workers)] if s.elastic else [])],
            # Ray Train's INFO lines repeat every metric dict; our callback prints one line per evaluation.
            logging_config=ray.train.LoggingConfig(log_level="WARNING"),
        ),
    )


def check_job_runs_here(job: Job) -> None:
    """Checks that need the cluster: resources for the workers, or in local mode this process's
    GPU (the rest ran at load time)."""
    from scaling_study.ray_env import check_fits
    from scaling_study.train.devices import check_local_device

    if job.scaling.max_workers > 0:  # an elastic run starts once its fewest fit
        check_fits(job.scaling.min_workers, per_worker_resources(job))
    check_local_device(job)


def finish(job: Job, result) -> RunResult:
    """Turn Ray's `Result` into ours; raise `RunFailed` with the reason when the run failed."""
    from scaling_study.train import placement
    from scaling_study.train.records import read_records

    run_dir = job_run_dir(job)
    records = read_records(run_dir)
    if result.error is not None:
        raise RunFailed(f"run {job.name!r} failed: {placement.explain(job, result.error) or result.error}\n  records so far: {run_dir / RECORDS}")
    metrics = dict(result.metrics or {})
    if metrics.get("failed"):
        raise RunFailed(f"run {job.name!r} stopped: {metrics['failed']} (lr {metrics.get('lr'):.3g}); "
                        "lower optimizer.lr, raise schedule.warmup or set train.max_grad_norm")
    if len(records):
        write_parquet(records, run_dir / RECORDS_PARQUET)
    checkpoint = result.checkpoint.path if result.checkpoint else None
    return RunResult(as_path(run_dir), records, metrics, checkpoint)


def run_job(job: Job, *, address: str | None = None, verbose: bool = True, log_every: int = 10,
            output_key: str = "output.dir", before_step=None) -> RunResult:
    """Run `job` on Ray Train (embedded local Ray unless `address`), return its records.

    Re-running a job with the same `name` and `output.dir` continues it from its last checkpoint.
    `output_key` names where `output.dir` came from in errors (the job file, a flag);
    `before_step` is for tests only (see `WorkerConfig.before_step`).
    """
    from scaling_study.config.components import check_components
    from scaling_study.ray_env import ensure_ray
    from scaling_study.train.tasks import resolve_data_files

    check_components(job)
    run_dir = job_run_dir(job)
    run_dir.parent.check_reachable(output_key)  # a bucket and credentials, before Ray starts
    files = resolve_data_files(job)  # generate/check data before any worker starts
    ensure_ray(address)
    check_job_runs_here(job)
    dump_job(job, run_dir / JOB_FILE, header=f"The job of run {job.name!r}, as it ran.")
    trainer = build_trainer(job, files, verbose=verbose, log_every=log_every, before_step=before_step)
    return finish(job, fit(trainer, job))


def fit(trainer, job: Job):
    """`trainer.fit()`, with Ray's training errors turned into a `RunFailed` that says where to look."""
    import ray.train

    from scaling_study.train import placement

    try:
        return trainer.fit()
    except ray.train.TrainingFailedError as exc:
        unplaced = placement.explain(job, exc)
        if unplaced:
            raise RunFailed(f"run {job.name!r} failed: {unplaced}") from None
        first = str(exc).strip().splitlines()
        raise RunFailed(f"run {job.name!r} failed after {job.output.max_failures} restart(s) "
                        f"(output.max_failures): {first[0] if first else type(exc).__name__}\n{exc}\n"
                        f"  records so far: {job_run_dir(job) / RECORDS}") from None
