"""Records: one row per evaluation, kept in RUN_DIR/records.csv, the run's one durable store.

Workers build rows (`make_row`) and report them. `append_record` adds each to the file as it
arrives: `RecordsCallback` calls it on the Ray Train controller, and in local mode, where Ray
Train calls no callbacks, the worker calls it itself. A worker that starts cuts the file back to
the step its checkpoint restored (`truncate_records`), so rows of steps trained again after a
restart are written once, by the run that kept them. The columns are the contract's
(`scaling_study.contract`).
"""
from __future__ import annotations

import math

import pandas as pd
from ray.train import UserCallback

from scaling_study import compat
from scaling_study.contract import COLUMN_NAMES as COLUMNS, METRICS, PRIMARY_METRIC
from scaling_study.layout import RECORDS
from scaling_study.storage import Loc, read_csv, write_csv

# Every run's Train controller imports this module (to unpickle `RecordsCallback`) before it starts
# a worker group: the place to make it hand each worker group's placement group to Ray's cleaner
# as soon as it exists, so that a controller killed while its workers start leaks nothing.
compat.install_placement_group_fix()

NAN = float("nan")
# The metrics an evaluator returns (the training loss comes from the window).
EVAL_METRICS = tuple(name for name in METRICS if name != "loss")


def make_row(job, phase, state, metrics: dict, *, trial_id: str = "", reached: bool = False) -> dict:
    """The record of an evaluation of `job` after `state`'s latest step, in phase `phase`."""
    target = job.eval.target
    pos, window = state.position, state.window
    return {
        "run_id": job.name, "trial_id": trial_id,
        "task": job.task, "model": job.model.name, "optimizer": job.optimizer.name,
        "lr": state.lr, "peak_lr": job.peak_lr(phase), "lr_rule": job.schedule.lr_rule,
        "per_worker_batch": phase.per_worker_batch, "grad_accum": phase.grad_accum,
        "num_workers": state.world, "global_batch": phase.global_batch,
        "scaling_mode": job.train.scaling_mode, "seed": job.train.seed, "device": state.device.type,
        "phase": phase.index + 1, "seq_len": phase.seq_len, "step": pos.step, "samples": pos.samples,
        "train_time_s": state.clock.train, "wall_time_s": state.clock.wall(),
        "throughput": window.throughput(), "loss": window.mean_loss(),
        **{name: metrics.get(name, NAN) for name in EVAL_METRICS},
        "time_compute_s": window.per_step("compute"), "time_allreduce_s": window.per_step("allreduce"),
        "time_optimizer_s": window.per_step("optimizer"),
        **state.noise.record(),
        "target_metric": target.metric if target else "", "target_value": target.value if target else NAN,
        "target_reached": reached,
    }


def write_csv_atomic(df: pd.DataFrame, path) -> Loc:
    """Write `df` to `path` (a local path or a URI, see `storage.Loc`) all at once."""
    return write_csv(df, Loc(path))


def read_records(path) -> pd.DataFrame:
    """A run's records: `path` is its records.csv or its folder (local or a URI); no rows if absent."""
    path = Loc(path)
    if path.suffix != ".csv":
        path = path / RECORDS
    return read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


def merge_row(df: pd.DataFrame, row: dict) -> pd.DataFrame:
    """`df` with `row` (its contract columns) appended, dropping rows at or after its step."""
    kept = df[df["step"] < row["step"]] if len(df) else df
    new = pd.DataFrame([{k: row.get(k, NAN) for k in COLUMNS}])
    return new if kept.empty else pd.concat([kept, new], ignore_index=True)


def append_record(run_dir, row: dict, *, verbose: bool = False) -> None:
    """Add `row` to RUN_DIR/records.csv (replacing any rows at or after its step) and, when
    `verbose`, print its progress line."""
    path = Loc(run_dir) / RECORDS
    write_csv_atomic(merge_row(read_records(path), row), path)
    if verbose:
        print(progress_line(row), flush=True)


def truncate_records(run_dir, step: int) -> None:
    """Drop the rows after `step` from RUN_DIR/records.csv: those of steps a restart trains again."""
    path = Loc(run_dir) / RECORDS
    df = read_records(path)
    if len(df) and (df["step"] > step).any():
        write_csv_atomic(df[df["step"] <= step], path)


def progress_line(row: dict) -> str:
    name = PRIMARY_METRIC[row["task"]]
    metric = f"{name} {row[name]:.2f}" if _finite(row.get(name)) else ""
    return (f"[{row['run_id']}] phase {row['phase']} step {row['step']} | {row['samples']} samples | "
            f"{row['throughput']:.1f} samples/s | loss {row['loss']:.4f} | {metric} | "
            f"train {row['train_time_s']:.0f}s wall {row['wall_time_s']:.0f}s")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class RecordsCallback(UserCallback):
    """Runs on the Ray Train controller: appends each reported record to RUN_DIR/records.csv."""

    def __init__(self, run_dir: str, verbose: bool = True):
        self.run_dir = run_dir
        self.verbose = verbose

    def after_report(self, run_context, metrics, checkpoint):
        # Rank 0's row; every rank reports the same evaluation. Ray Train has registered the
        # report's checkpoint before it calls this, so every row has its checkpoint.
        append_record(self.run_dir, metrics[0], verbose=self.verbose)
