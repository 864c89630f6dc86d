"""Export: the best trial of a sweep as a job YAML that `scaling-study run` runs again as it is.

- `select_trial` ranks the runs with the reports' own functions (`targets.best_trial`,
  `targets.rank_by_time_to_target`); trials a sweep marked ERROR are left out.
- `load_trial_job` reads the job the chosen run ran: `SWEEP_DIR/trials/<trial_id>/job.yaml` for a
  sweep's trial, `RUN_DIR/job.yaml` for a run.
- `rescale` moves that job to another worker count with the scaling study's batch rules
  (`tune.study.weak` / `strong`), so an exported job and a sweep's trial at N workers agree; the
  peak LR then follows by the job's `schedule.lr_rule` (see `Job.peak_lr`).
- `export` writes the job (atomically) with a header saying where it came from and what changed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import pandas as pd

from scaling_study.config import Job, OutputConfig, dump_job, job_from_dict, load_job
from scaling_study.config.schema import to_dict
from scaling_study.contract import HP_PREFIX, METRICS
from scaling_study.errors import UserError
from scaling_study.layout import JOB_FILE, TRIALS_DIR
from scaling_study.results.records import Results, load_results
from scaling_study.results.targets import (
    Target, best_trial, make_target, rank_by_time_to_target, resolve_target,
)
from scaling_study.storage import Loc, as_path
from scaling_study.tune import study

TIME_TO_TARGET = "time_to_target"


# --- choosing the trial ----------------------------------------------------------------------

def select_trial(results: Results, metric: str, mode: str | None = None,
                 target: Target | None = None) -> tuple[str, pd.Series]:
    """The best run of `results`: best `metric` over its evaluations (`mode` max/min, default the
    metric's own direction), or with metric "time_to_target" the fastest to reach `target`
    (default: the target the records carry).

    Returns (trial id — the run id for a run outside a sweep, the run's summary row: source,
    ids, configuration, `hp.*`, and `best_<metric>` or the time to target). Trials with status
    ERROR in a sweep's trials.csv are not candidates. UserError when no run qualifies.
    """
    records = usable_records(results)
    if metric == TIME_TO_TARGET:
        row = _fastest(records, target or resolve_target(records))
    else:
        _check_metric(records, metric)
        row = best_trial(records, metric, mode or METRICS[metric].mode)
    return _trial_id(row), row


def usable_records(results: Results) -> pd.DataFrame:
    """The records without the trials that a sweep's trials.csv marks ERROR (same directory)."""
    keys = _errored(results)
    if not keys or "trial_id" not in results.records.columns:
        return results.records
    rec = results.records
    mask = [(str(as_path(s).parent), t) in keys for s, t in zip(rec["source"], rec["trial_id"])]
    left = rec[~pd.Series(mask, index=rec.index)]
    if left.empty:
        raise UserError(f"{', '.join(results.sources)}: every trial ended in ERROR; nothing to export")
    return left


def errored_trials(results: Results) -> list[str]:
    """Ids of the trials left out because their sweep marked them ERROR (for a note)."""
    return sorted(trial for _, trial in _errored(results))


def _errored(results: Results) -> set[tuple[str, str]]:
    trials = results.trials
    if trials is None or not {"trial_id", "status"} <= set(trials.columns):
        return set()
    bad = trials[trials["status"].str.upper() == "ERROR"]
    return {(str(as_path(s).parent), t) for s, t in zip(bad["source"], bad["trial_id"])}


def _check_metric(records: pd.DataFrame, metric: str) -> None:
    have = [m for m in METRICS if m in records.columns and records[m].notna().any()]
    if metric not in have:
        where = ", ".join(records["source"].unique())
        raise UserError(f"{where}: --metric {metric!r}: the records have no values of it; "
                        f"valid here: {', '.join([*have, TIME_TO_TARGET])}")


def _fastest(records: pd.DataFrame, target: Target | None) -> pd.Series:
    if target is None:
        raise UserError(f"--metric {TIME_TO_TARGET}: the records carry no target; give one, "
                        "e.g. --target-metric f1 --target 88")
    ranked = rank_by_time_to_target(records, target)
    top = ranked.iloc[0]
    if not top["reached"]:
        best = f"best_{target.metric}"
        raise UserError(f"no run reached {target}: the closest, {_trial_id(top)}, got to "
                        f"{target.metric} {top[best]:.4g}; give a target within reach (--target) "
                        f"or choose by --metric {target.metric}")
    return top


def export_target(records: pd.DataFrame, metric: str | None, value: float | None) -> Target | None:
    """The target for "time_to_target": `--target-metric`/`--target` as given, the records' own
    metric with `--target` alone, or the records' target when neither is given."""
    if metric is None and value is not None:
        carried = resolve_target(records)
        if carried is None:
            raise UserError(f"--target {value:g}: the records carry no target metric; add --target-metric")
        return make_target(carried.metric, value)
    return resolve_target(records, metric, value)


def _trial_id(row: pd.Series) -> str:
    for key in ("trial_id", "run_id"):
        if isinstance(row.get(key), str) and row[key]:
            return row[key]
    return row["run"]


def load_trial_job(row: pd.Series) -> tuple[Path | Loc, Job]:
    """The job file of the run in `row` (a `select_trial` row) and its job: a sweep's
    trials/<trial_id>/job.yaml, or a run directory's job.yaml. UserError naming the file when it
    is missing or holds another run's job (a trial's job is named after the trial, a run's
    after the run)."""
    folder = as_path(row["source"]).parent
    trial_id = row.get("trial_id") or ""
    in_sweep = bool(trial_id) and (folder / TRIALS_DIR).is_dir()
    path = folder / TRIALS_DIR / trial_id / JOB_FILE if in_sweep else folder / JOB_FILE
    if not path.is_file():
        raise UserError(f"{path}: no such file, so the job of {_trial_id(row)} (chosen from "
                        f"{row['source']}) cannot be exported; export reads a sweep directory, which "
                        f"keeps {TRIALS_DIR}/<trial_id>/{JOB_FILE}, or a run directory with its {JOB_FILE}")
    job = load_job(path)
    ids = {row.get(k) for k in ("trial_id", "run_id")} - {"", None}
    if ids and job.name not in ids:
        raise UserError(f"{path}: holds the job of {job.name!r}, but the records chosen from "
                        f"{row['source']} are of {_trial_id(row)!r}; export needs the job that run ran")
    return path, job


# --- rescaling -------------------------------------------------------------------------------

def rescale(job: Job, workers: int, mode: str | None = None) -> tuple[Job, list[str]]:
    """`job` on `workers` workers (0: one rank in the driver process), and one line per change.

    Weak (the default unless `train.scaling_mode` says strong) keeps every phase's per-worker
    batch and accumulation, so the global batch grows with the workers. Strong keeps every
    phase's global batch: grad_accum = global / (per_worker_batch x workers), the per-worker batch
    shrinking to the largest divisor that works. The peak LR follows by `schedule.lr_rule` from
    `schedule.reference_batch`; with rule none or no reference batch it stays as it is.
    UserError for a negative count or one that cannot keep the global batch (lists valid ones).
    """
    mode = mode or job.train.scaling_mode or "weak"
    if mode not in ("weak", "strong"):
        raise UserError(f"--scaling {mode!r}: valid: weak, strong")
    if workers < 0:
        raise UserError(f"--workers {workers}: must be >= 1 (or 0 to run in the driver process)")
    if workers == job.scaling.num_workers:
        return job, []
    rule = study.weak if mode == "weak" else study.strong
    try:
        # The batch arithmetic sees data-parallel ranks: 0 workers is one rank in the driver.
        data = rule(to_dict(job), job.phases(), max(1, workers), {})
    except study.StudyError:
        raise UserError(_indivisible(job, workers)) from None
    data["scaling"]["num_workers"] = workers
    new = job_from_dict(data, source=f"--workers {workers} --scaling {mode}")
    return new, describe_changes(job, new)


def _indivisible(job: Job, workers: int) -> str:
    batches = sorted({p.global_batch for p in job.phases()})
    valid = [n for n in range(1, min(batches) + 1) if all(b % n == 0 for b in batches)]
    return (f"--workers {workers} --scaling strong: the global batch ({', '.join(map(str, batches))}) "
            f"cannot be split evenly over {workers} workers; valid worker counts: "
            f"{', '.join(map(str, valid))} (or --scaling weak)")


def describe_changes(old: Job, new: Job) -> list[str]:
    """One "key: before -> after" line per changed worker count, scaling mode and phase batch
    value, then one line per phase saying how the peak LR moved (or why it did not)."""
    lines = _diff("scaling.num_workers", old.scaling.num_workers, new.scaling.num_workers)
    lines += _diff("train.scaling_mode", old.train.scaling_mode or "(unset)", new.train.scaling_mode)
    many = old.train.phases is not None
    for before, after in zip(old.phases(), new.phases()):
        key = f"train.phases[{before.index}]" if many else "train"
        # Only strong scaling moves the micro-batch, and only where it must: say why.
        lines += [f"{line} (the largest micro-batch that splits the global batch {after.global_batch} "
                  f"over {new.data_workers} workers)"
                  for line in _diff(f"{key}.per_worker_batch", before.per_worker_batch, after.per_worker_batch)]
        for name in ("grad_accum", "global_batch"):
            lines += _diff(f"{key}.{name}", getattr(before, name), getattr(after, name))
        label = f"peak LR of phase {before.index + 1}" if many else "peak LR"
        lines.append(f"{label}: {_lr_change(old, new, before, after)}")
    return lines


def _diff(key: str, before, after) -> list[str]:
    return [] if before == after else [f"{key}: {before} -> {after}"]


def _lr_change(old: Job, new: Job, before, after) -> str:
    rule, ref = new.schedule.lr_rule, new.schedule.reference_batch
    if before.global_batch == after.global_batch:
        return "unchanged (the global batch is unchanged)"
    if rule == "none":
        return f"unchanged at {after.lr:.3g} (schedule.lr_rule is none)"
    if ref is None:
        return (f"unchanged at {after.lr:.3g} (no schedule.reference_batch: optimizer.lr is the LR "
                f"at the job's own global batch; set one for the {rule} rule to move it)")
    return f"{old.peak_lr(before):.3g} -> {new.peak_lr(after):.3g} ({rule} rule from reference batch {ref})"


# --- writing ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Exported:
    """What `export` wrote and why: the chosen trial, its result, and every change to its job."""

    path: Path
    trial_id: str
    job_file: Path
    """The trial's own job, the one the export started from."""
    result: str
    """The trial's value of the selection metric, in words."""
    changes: tuple[str, ...]
    notes: tuple[str, ...]
    replaced: bool
    """`path` held a file before (now replaced)."""


def export(sweep_dirs: str | Path | Sequence[str | Path], metric: str, mode: str | None,
           out: str | Path, *, workers: int | None = None, scaling: str | None = None,
           target_metric: str | None = None, target: float | None = None,
           name: str | None = None) -> Exported:
    """Write the best run's job of `sweep_dirs` (sweep or run directories) to `out`.

    The job is the trial's own, renamed (`name`, default `best_<sweep>`, `_<N>w` appended when
    rescaled so that it never resumes another run's checkpoints), written to `runs/` instead of
    into the sweep, and rescaled to `workers` when given. Nothing is written on error.
    """
    results = load_results(as_list(sweep_dirs))
    goal = export_target(results.records, target_metric, target) if metric == TIME_TO_TARGET else None
    trial_id, row = select_trial(results, metric, mode, goal)
    job_file, job = load_trial_job(row)
    new, changes = rescale(job, workers, scaling) if workers is not None else (job, [])
    folder = as_path(row["source"]).parent
    default = f"best_{folder.name}" + (f"_{workers}w" if changes else "")
    new, renamed = standalone(new, name or default, folder)
    result = _result_text(row, metric, mode, goal)
    notes = _notes(results, job, workers, changes)
    header = job_header(f"Best trial of {folder} by {metric}: {trial_id}, {result}.", row, job_file,
                        renamed + changes)
    replaced = Path(out).exists()
    path = dump_job(new, out, header)
    return Exported(path, trial_id, job_file, result, tuple(renamed + changes), tuple(notes), replaced)


def as_list(sweep_dirs: str | Path | Sequence[str | Path]) -> list[str | Path]:
    return [sweep_dirs] if isinstance(sweep_dirs, (str, Path)) else list(sweep_dirs)


def standalone(job: Job, name: str, folder: Path | Loc) -> tuple[Job, list[str]]:
    """The job under `name`, writing its run to the default output folder rather than into a
    sweep's trials folder (where a trial's job points); a run's own output folder is kept."""
    data, lines = to_dict(job), _diff("name", job.name, name)
    data["name"] = name
    trials = {Loc(folder / TRIALS_DIR), Loc(folder).parent}  # a sweep dir, or a trial's dir
    sweeps = {Loc(folder).name, Loc(folder).parent.parent.name}  # the sweep's name, also where it was before a move
    out = Loc(job.output.dir)
    if out.name == TRIALS_DIR and (out in trials or out.parent.name in sweeps):
        data["output"]["dir"] = OutputConfig().dir
        lines += _diff("output.dir", job.output.dir, data["output"]["dir"])
    return job_from_dict(data, source=f"--name {name}"), lines


def _result_text(row: pd.Series, metric: str, mode: str | None, goal: Target | None) -> str:
    if goal is None:
        return f"best {metric} {row[f'best_{metric}']:.4g} ({mode or METRICS[metric].mode})"
    at = f" (step {int(row['step'])})" if not _missing(row.get("step")) else ""
    return f"reached {goal} after {row['train_time_s']:.1f} s of training{at}"


def _notes(results: Results, job: Job, workers: int | None, changes: list[str]) -> list[str]:
    notes = []
    errored = errored_trials(results)
    if errored:
        notes.append(f"left out {len(errored)} trial(s) that ended in ERROR: {', '.join(errored)}")
    if workers is not None and not changes:
        notes.append(f"--workers {workers}: the trial already ran on {job.scaling.num_workers} workers; nothing to rescale")
    return notes


def job_header(title: str, row: pd.Series, job_file: Path, changes: list[str]) -> str:
    """The comment atop an exported job: `title`, the swept values of the run in `row`, the file
    its job came from and every change made to it."""
    swept = ", ".join(f"{c[3:]}={_fmt(row[c])}" for c in row.index
                      if c.startswith(HP_PREFIX) and not _missing(row[c]))
    lines = [title,
             f"Swept values: {swept or '(none recorded)'}",
             f"From {job_file}, written by `scaling-study export`.",
             "Changed from the trial's job:" if changes else "Unchanged from the trial's job.",
             *(f"  {line}" for line in changes)]
    return "\n".join(lines)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value == ""
