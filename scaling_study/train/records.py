"""Records: one row per evaluation — the contract between training and reports.

Workers build rows (`make_row`); the Ray Train controller writes them to `RUN_DIR/records.csv`
through `RecordsCallback` as each report arrives, so the file is current while the run goes on.
Rows travel inside each checkpoint too: after a restart the file is rewritten from the restored
rows, so no step appears twice or goes missing.
"""
from __future__ import annotations

import math

import pandas as pd
from ray.train import UserCallback

from scaling_study.contract import COLUMN_NAMES as COLUMNS, METRICS, PRIMARY_METRIC
from scaling_study.storage import Loc, read_csv, write_csv

NAN = float("nan")
# The metrics an evaluator returns (the training loss comes from the window).
EVAL_METRICS = tuple(name for name in METRICS if name != "loss")


def make_row(job, config, phase, pos, clock, window, metrics, *, lr, device, reached) -> dict:
    target = job.eval.target
    return {
        "run_id": config.get("run_id", job.name), "trial_id": config.get("trial_id", ""),
        "task": job.task, "model": job.model.name, "optimizer": job.optimizer.name,
        "lr": lr, "peak_lr": job.peak_lr(phase), "lr_rule": job.schedule.lr_rule,
        "per_worker_batch": phase.per_worker_batch, "grad_accum": phase.grad_accum,
        "num_workers": job.data_workers, "global_batch": phase.global_batch,
        "scaling_mode": job.train.scaling_mode, "seed": job.train.seed, "device": device,
        "phase": phase.index + 1, "seq_len": phase.seq_len, "step": pos.step, "samples": pos.samples,
        "train_time_s": clock.train, "wall_time_s": clock.wall(),
        "throughput": window.throughput(), "loss": window.mean_loss(),
        **{name: metrics.get(name, NAN) for name in EVAL_METRICS},
        "time_compute_s": window.per_step("compute"), "time_allreduce_s": window.per_step("allreduce"),
        "time_optimizer_s": window.per_step("optimizer"),
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
        path = path / "records.csv"
    return read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)


def merge_row(df: pd.DataFrame, row: dict) -> pd.DataFrame:
    """Append `row`, dropping rows at or after its step (replayed after a restart)."""
    row = {k: row.get(k, NAN) for k in COLUMNS} | {k: v for k, v in row.items() if k not in COLUMNS and k != "finished"}
    kept = df[df["step"] < row["step"]] if len(df) else df
    new = pd.DataFrame([row])
    return new if kept.empty else pd.concat([kept, new], ignore_index=True)


def progress_line(row: dict) -> str:
    name = PRIMARY_METRIC[row["task"]]
    metric = f"{name} {row[name]:.2f}" if _finite(row.get(name)) else ""
    return (f"[{row['run_id']}] phase {row['phase']} step {row['step']} | {row['samples']} samples | "
            f"{row['throughput']:.1f} samples/s | loss {row['loss']:.4f} | {metric} | "
            f"train {row['train_time_s']:.0f}s wall {row['wall_time_s']:.0f}s")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


class RecordsCallback(UserCallback):
    """Runs on the Ray Train controller: writes each reported record and prints progress."""

    def __init__(self, run_dir: str, verbose: bool = True):
        self.path = Loc(run_dir) / "records.csv"
        self.verbose = verbose

    def after_report(self, run_context, metrics, checkpoint):
        row = metrics[0]  # rank 0's row; every rank reports the same evaluation
        write_csv_atomic(merge_row(read_records(self.path), row), self.path)
        if self.verbose:
            print(progress_line(row), flush=True)
