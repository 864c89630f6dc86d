"""`export --recommend --workers N`: the recommendation for N workers as a job YAML that runs.

`answers.recommend` gives, for N workers, the optimizer, global batch, accumulation and peak LR
and the expected time to the target, measured or projected. Exporting it:

- **measured** (a run at N workers reached the target): that run's job, as it ran;
- **projected** (and **extrapolated**, beyond the measured batches, the row's detail saying so):
  the job of the run the recommendation starts from (the fastest run of the best
  setting at the measured batch nearest the recommended one, so its other hyperparameters come
  along), with the workers, batch, accumulation and optimizer set and the peak LR pinned
  (`answers.recommend.job_overrides`: `schedule.lr_rule: none`, so no rule moves it again).
  `train.steps` is scaled by (projected steps to target) / (the run's own steps to target), so
  the target falls at the same point of the LR schedule as it did in that run;
- **none**: an error saying why (no run at N reached the target and nothing could be projected).

Plain `export --workers N` is unchanged: it rescales the best trial by its own LR rule.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from scaling_study.answers.plan import PlanOptions
from scaling_study.answers.recommend import job_overrides, recommend
from scaling_study.config import Job, dump_job, job_from_dict
from scaling_study.config.load import set_dotted
from scaling_study.config.schema import to_dict
from scaling_study.errors import UserError
from scaling_study.reports.export import (
    Exported, as_list, errored_trials, export_target, job_header, load_trial_job, standalone,
    usable_records,
)
from scaling_study.results.records import load_results
from scaling_study.results.targets import Target, time_to_target
from scaling_study.storage import as_path


def export_recommended(sweep_dirs: str | Path | Sequence[str | Path], out: str | Path, *, workers: int,
                       target_metric: str | None = None, target: float | None = None,
                       plan: PlanOptions | None = None, name: str | None = None) -> Exported:
    """Write the job that runs the recommendation for `workers` workers (module docstring).

    The target is `target_metric`/`target` as given, or the records' own. The job is renamed
    (`name`, default `recommended_<sweep>_<N>w`) and written to `runs/`. UserError when there is
    no target, no recommendation (saying why) or the job to change has several phases.
    """
    if workers < 1:
        raise UserError(f"--recommend --workers {workers}: a recommendation is for 1 or more workers")
    results = load_results(as_list(sweep_dirs))
    records = usable_records(results)
    goal = export_target(records, target_metric, target)
    if goal is None:
        raise UserError("--recommend: the records carry no target; give one, e.g. --target-metric f1 --target 88")
    row, plan_note = _recommendation(records, goal, workers, plan or PlanOptions())
    source = _run_row(records, goal, row["run"])
    job_file, job = load_trial_job(source)
    new, changes = (job, []) if row["basis"] == "measured" else apply_recommendation(job, row, source, goal)
    folder = as_path(source["source"]).parent
    new, renamed = standalone(new, name or f"recommended_{folder.name}_{workers}w", folder)
    result = describe(row, goal)
    title = f"Recommendation for {workers} workers from {folder} ({row['basis']}): {result}."
    header = job_header(title, source, job_file, renamed + changes)
    errored = errored_trials(results)
    notes = [f"left out {len(errored)} trial(s) that ended in ERROR: {', '.join(errored)}"] if errored else []
    notes += [plan_note] if row["basis"] in ("projected", "extrapolated") else []
    replaced = Path(out).exists()
    path = dump_job(new, out, header)
    trial_id = source.get("trial_id") or source.get("run_id") or source["run"]
    return Exported(path, trial_id, job_file, result, tuple(renamed + changes), tuple(notes), replaced)


def _recommendation(records: pd.DataFrame, goal: Target, workers: int, options: PlanOptions) -> tuple[pd.Series, str]:
    """(the recommendation's row for `workers`, what its plan assumed); UserError for none."""
    try:
        plan, plan_note = options.resolve(records)
    except UserError as exc:  # measured rows need no plan
        plan, plan_note = None, str(exc)
    row = recommend(records, goal, [workers], plan).iloc[0]
    if row["basis"] == "none":
        cause = "" if plan is not None else f"; nothing can be projected: {plan_note}"
        raise UserError(f"--recommend --workers {workers}: no recommendation: {row['detail']}{cause}")
    return row, plan_note


def _run_row(records: pd.DataFrame, goal: Target, run: str) -> pd.Series:
    """The `time_to_target` row (source, ids, configuration, steps to `goal`) of `run`."""
    table = time_to_target(records, goal)
    return table[table["run"] == run].iloc[0]


def apply_recommendation(job: Job, row: pd.Series, source: pd.Series, goal: Target) -> tuple[Job, list[str]]:
    """`job` (the source run's) set to run the projected `row`, and one line per change.

    UserError for a job with `train.phases`: a recommendation is one batch and one peak LR.
    """
    if job.train.phases is not None:
        raise UserError(f"--recommend: the job of {source['run']} has {len(job.train.phases)} phases "
                        "(train.phases) and a recommendation sets one batch and one peak LR; export "
                        "the best trial with --workers N alone, or recommend from single-phase runs")
    if pd.isna(row["peak_lr"]):
        raise UserError(f"--recommend: the records hold no LR of {row['optimizer']} at the measured "
                        "batches (columns peak_lr or hp.optimizer.lr), so the recommendation has none")
    data = to_dict(job)
    for key, value in job_overrides(row).items():
        set_dotted(data, key, value)
    steps_line = _scale_steps(data, job, row, source, goal)
    new = job_from_dict(data, source=f"--recommend --workers {int(row['num_workers'])}")
    return new, _changes(job, new, row) + steps_line


def _scale_steps(data: dict, job: Job, row: pd.Series, source: pd.Series, goal: Target) -> list[str]:
    """Set train.steps so that the target falls where it did in the source run's schedule.

    Both crossings are midpoints: the source run's between its last evaluation below the target
    and its first at it, the projection's S(B) from the fit to such midpoints."""
    first, projected = source.get("step"), row["steps_to_target"]
    before = source.get("step_before", first)
    if job.train.steps is None or not first or pd.isna(first):
        return [f"train.epochs kept at {job.train.epochs:g}: the projection expects {goal} after "
                f"~{projected:.0f} steps"] if job.train.epochs is not None else []
    crossed = (before + first) / 2
    steps = max(1, math.ceil(round(job.train.steps * projected / crossed, 6)))  # 400.0000001 is 400
    data["train"]["steps"] = steps
    return [f"train.steps: {job.train.steps} -> {steps} ({source['run']} crossed {goal} between steps "
            f"{before:.0f} and {first:.0f} of {job.train.steps}; the projection expects step {projected:.0f} at "
            f"batch {int(row['global_batch'])})"]


def _changes(old: Job, new: Job, row: pd.Series) -> list[str]:
    before, after = old.phases()[0], new.phases()[0]
    lines = [f"{key}: {a} -> {b}" for key, a, b in (
        ("optimizer.name", old.optimizer.name, new.optimizer.name),
        ("scaling.num_workers", old.scaling.num_workers, new.scaling.num_workers),
        ("train.per_worker_batch", before.per_worker_batch, after.per_worker_batch),
        ("train.grad_accum", before.grad_accum, after.grad_accum),
        ("train.global_batch", before.global_batch, after.global_batch)) if a != b]
    how = "the best LR measured at this batch" if row["lr_rule"] == "measured" else \
        f"the best LR of the nearest measured batch, moved by the {row['lr_rule']} rule the sweep's best LRs follow"
    lines.append(f"peak LR: {old.peak_lr(before):.3g} -> {new.peak_lr(after):.3g} ({how}; pinned: "
                 "schedule.lr_rule none, no reference_batch)")
    return lines


def describe(row: pd.Series, goal: Target) -> str:
    """The recommendation in one line: optimizer, batch, accumulation, peak LR, time to `goal`."""
    return (f"{row['optimizer']} at global batch {int(row['global_batch'])} ({int(row['per_worker_batch'])} "
            f"per worker × {int(row['grad_accum'])} accumulated), peak LR {row['peak_lr']:.3g} "
            f"({row['lr_rule'] or 'as run'}); {goal} after {row['steps_to_target']:.0f} steps, "
            f"{row['time_to_target_s']:.4g} s of training")
