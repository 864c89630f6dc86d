"""A sweep: a Ray Tune `Tuner` whose trainable is the run driver (one trial = one TorchTrainer).

The Ray Train V2 pattern: the Tune trial runs `trial_driver`, which builds the trial's `Job` from
the search space (checked once, on the sweep's driver, and handed to every trial) and fits a
`TorchTrainer` with Tune's report callback; ASHA (with its rungs persisted, see `asha.py`) stops
weak trials on the monotonic `samples` attribute; `retention.py` prunes the checkpoints of
completed trials. Records of every trial are gathered into the sweep's `records.csv` and
`trials.csv`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

from scaling_study.contract import HP_PREFIX
from scaling_study.errors import UserError
from scaling_study.layout import ASHA_STATE, JOB_FILE, PARAMS, TRIALS_DIR, TUNE_DIR, TUNER_STATE, tune_dirs
from scaling_study.storage import Loc, as_path, read_csv

DRIVER_MEMORY = 64 * 1024**2  # bytes reserved by each trial's driver (it holds no CPU)


def trial_driver(params: dict, *, space, sweep_dir: str, cwd: str) -> None:
    """Tune trainable: build the trial's job from the checked `SearchSpace` (no file is read) and
    fit its TorchTrainer (runs in the trial actor)."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from scaling_study.config import dump_job
    from scaling_study.train import placement
    from scaling_study.train.driver import build_trainer
    from scaling_study.train.tasks import resolve_data_files
    from scaling_study.tune.retention import was_finished

    trial_id = tune.get_context().get_trial_id()
    run_dir = Loc(sweep_dir) / TRIALS_DIR / trial_id
    if was_finished(run_dir):
        # Completed before the sweep was killed, but after Tune last saved its state: its
        # checkpoints are pruned, so training it again would start over.
        print(f"[scaling_study] trial {trial_id} had completed before the sweep stopped; not run again")
        return
    job = trial_job(space, params, trial_id, sweep_dir, cwd)
    (run_dir / PARAMS).write_text(json.dumps({"trial_id": trial_id, "params": params}, default=str))
    dump_job(job, run_dir / JOB_FILE, header=f"Trial {trial_id} of sweep {Loc(sweep_dir).name}: {params}")
    files = resolve_data_files(job, generate=False)  # generated once by the sweep before any trial
    trainer = build_trainer(job, files, trial_id=trial_id, callbacks=[TuneReportCallback()], verbose=False)
    result = trainer.fit()
    if result.error is not None:  # Tune's FailureConfig retries the trial, then reports it as ERROR
        unplaced = placement.explain(job, result.error)
        raise RuntimeError(f"trial {trial_id}: {unplaced}") if unplaced else result.error
    if (result.metrics or {}).get("failed"):
        raise RuntimeError(f"trial {trial_id}: {result.metrics['failed']}")


def trial_job(space, params: dict, trial_id: str, sweep_dir: str, cwd: str):
    """The trial's job: relative paths from where the sweep was launched, output in the sweep."""
    from scaling_study.config import with_absolute_paths

    job = with_absolute_paths(space.job_for(params, name=trial_id), Path(cwd))
    output = dataclasses.replace(job.output, dir=str(Loc(sweep_dir) / TRIALS_DIR))
    return dataclasses.replace(job, output=output)


def sweep_dir_of(space) -> Loc:
    """`output.dir/name`: an absolute local path, or a URI (see `scaling_study.storage`)."""
    return Loc(space.output.dir) / space.name


def prepare_data(space) -> None:
    """Generate or check each distinct data set the trials use, once, before any trial starts."""
    from scaling_study.train.tasks import resolve_data_files

    from scaling_study.config.components import check_components

    seen = set()
    for point in space.check_points():
        job = space.job_for(point, name="check")
        check_components(job, str(space.path))
        key = json.dumps(dataclasses.asdict(job.data), sort_keys=True, default=str) + job.task
        if key not in seen:
            seen.add(key)
            resolve_data_files(job)


def concurrency(space) -> int:
    """Trials at once: what the user asked, capped by how many of the largest trial fit the cluster."""
    import ray

    from scaling_study.ray_env import check_fits
    from scaling_study.train.resources import per_worker_resources, run_resources, runs_that_fit

    jobs = [space.job_for(p, name="check") for p in space.check_points()]
    for job in jobs:
        check_fits(job.scaling.min_workers, per_worker_resources(job), key="scaling")
    # Every resource a trial holds counts (GPUs too), not only its CPUs.
    fit = runs_that_fit(ray.cluster_resources(), [run_resources(job) for job in jobs])
    asked = space.max_concurrent_trials
    return min(asked, fit) if asked else fit


def build_tuner(space, *, resume: bool):
    """The sweep's `Tuner` (or the restored one); every trial gets the checked `space` itself,
    so the search-space file need not exist where the trials run."""
    from ray import tune

    from scaling_study.tune import steer
    from scaling_study.tune.reaper import PlacementGroupReaper
    from scaling_study.tune.retention import CheckpointRetention

    sweep_dir = sweep_dir_of(space)
    trainable = tune.with_parameters(trial_driver, space=space, sweep_dir=str(sweep_dir), cwd=os.getcwd())
    # The trial driver only waits on its TorchTrainer: it must not hold a CPU the workers need
    # (even 0.01 CPU would keep two 1-CPU workers off a 2-CPU machine). Tune wants a non-empty
    # bundle, so the driver reserves a little memory instead.
    trainable = tune.with_resources(trainable, {"CPU": 0, "memory": DRIVER_MEMORY})
    if resume:  # Tune restores the RunConfig, the retention callback included, as the sweep began
        return tune.Tuner.restore(str(saved_tune_dir(sweep_dir)), trainable=trainable, resume_unfinished=True,
                                  resume_errored=True, param_space=space.param_space())
    tune_config = space.tune_config(str(sweep_dir / ASHA_STATE), max_concurrent_trials=concurrency(space))
    # verbose=1: Tune's periodic table of trials (status, hyperparameters, samples, metric, loss)
    # without a box of every metric at every report.
    # A URI storage_path: Tune writes its experiment state there through pyarrow.fs, as `Loc` does.
    retention = CheckpointRetention(str(sweep_dir / TRIALS_DIR), keep=space.output.keep_checkpoints,
                                    metric=space.scheduler.metric, mode=space.scheduler.mode)
    # Steering (the study service's stop requests, and the sweep's status for its pages).
    hooks = steer.sweep_hooks(space, sweep_dir)
    # Tune's experiment folder is a folder of its own in the sweep's (layout.TUNE_DIR): a resumed
    # Tune reverts the files at its top to their state at the resume.
    run_config = tune.RunConfig(name=TUNE_DIR, storage_path=str(sweep_dir),
                                failure_config=space.failure_config(), stop=hooks["stop"],
                                # Worker groups a stopped trial's dying controller left behind: removed.
                                callbacks=[retention, PlacementGroupReaper(), *hooks["callbacks"]], verbose=1)
    return tune.Tuner(trainable, param_space=space.param_space(), tune_config=tune_config, run_config=run_config)


def run_sweep(space_path: str, overrides: list = (), *, address: str | None = None, resume: bool = False):
    """Run (or resume) the sweep in `space_path`; returns the sweep directory (a `Path`, or a
    `Loc` for a URI), the ResultGrid and the gathered tables."""
    from scaling_study.ray_env import ensure_ray
    from scaling_study.tune.gather import gather
    from scaling_study.tune.space import load_space

    space = load_space(space_path, list(overrides))  # everything is checked before a trial starts
    sweep_dir = sweep_dir_of(space)
    sweep_dir.parent.check_reachable(f"{space.path}: output.dir")
    saved = saved_tune_dir(sweep_dir)
    if resume and saved is None:
        raise UserError(f"--resume: no sweep to resume at {sweep_dir} (expected {TUNE_DIR}/{TUNER_STATE} there)")
    if not resume and saved is not None:
        raise UserError(f"{sweep_dir} already holds a sweep named {space.name!r}: resume it with "
                        f"--resume, or give another name (--set name=...)")
    prepare_data(space)
    ensure_ray(address)
    if resume:
        _restore_scheduler_note(sweep_dir)
    tuner = build_tuner(space, resume=resume)
    grid = tuner.fit()
    return as_path(sweep_dir), grid, gather(space, sweep_dir, grid)


def saved_tune_dir(sweep_dir: Loc) -> Loc | None:
    """The sweep's Tune folder that holds Tune's saved state (`layout.tune_dirs`); None if none does."""
    return next((d for d in tune_dirs(sweep_dir) if (d / TUNER_STATE).is_file()), None)


def _restore_scheduler_note(sweep_dir) -> None:
    if (sweep_dir / ASHA_STATE).is_file():
        print(f"[scaling_study] restoring ASHA rungs from {sweep_dir / ASHA_STATE}")


def summary(sweep_dir, grid, tables: dict) -> str:
    """What a user reads at the end of a sweep: counts, the best trial, where the results are."""
    import pandas as pd

    trials = read_csv(tables["trials"]) if tables["trials"].is_file() else pd.DataFrame()
    counts = trials["status"].value_counts().to_dict() if len(trials) else {}
    lines = [f"\nsweep {sweep_dir.name}: {len(trials)} trials "
             + ", ".join(f"{n} {status.lower()}" for status, n in sorted(counts.items()))]
    best = tables.get("best")
    if best:
        hp = {k.removeprefix(HP_PREFIX): v for k, v in best.items() if k.startswith(HP_PREFIX)}
        metric = next(k for k in best if k.startswith("best_"))
        lines.append(f"  best trial {best['trial_id']}: {metric[5:]} {best[metric]:.3f}  {hp}")
        lines.append(f"  its job:  {sweep_dir / TRIALS_DIR / best['trial_id'] / JOB_FILE}")
    errors = trials[trials["status"] == "ERROR"] if len(trials) else trials
    for _, row in errors.iterrows():
        lines.append(f"  ERROR {row['trial_id']}: {row['error']}")
    lines += [*_kept_lines(sweep_dir), f"  records: {tables['records']}", f"  trials:  {tables['trials']}",
              f"  report:  scaling-study report {sweep_dir} --out reports/{sweep_dir.name}/"]
    return "\n".join(lines)


def _kept_lines(sweep_dir, shown: int = 3) -> list[str]:
    """The checkpoints the sweep keeps (see output.keep_checkpoints) and its size on disk."""
    from scaling_study.tune.retention import footprint, human_size

    size, folders = footprint(sweep_dir)
    more = f" (+{len(folders) - shown} more)" if len(folders) > shown else ""
    kept = ", ".join(folders[:shown]) + more if folders else "none"
    return [f"  kept checkpoints: {kept}", f"  disk:    {human_size(size)} in {sweep_dir}"]
