"""The records contract: every column of a run's records and every metric, defined once.

One row per evaluation of a run (DESIGN.md, "Records"). Training writes rows with exactly these
columns; sweep gathering adds the swept values as ``hp.<key>`` columns and `trials.csv` its own
columns; reports, export, the CLI's choices and the configuration's checks read what is here.
This module imports neither Ray nor torch, so a user's records from elsewhere can be checked
against it, and anything may import it.
"""
from __future__ import annotations

from dataclasses import dataclass

from scaling_study.errors import UserError


@dataclass(frozen=True)
class Column:
    """One column of the records table."""

    name: str
    dtype: str
    """"str", "int" (a count), "float" or "bool"."""
    meaning: str
    config: bool = False
    """Describes how the run was configured: constant within a run (the run's identity in reports)."""


@dataclass(frozen=True)
class Metric:
    """An evaluation metric: which way is better, its scale, its label, the tasks that produce it."""

    name: str
    label: str
    mode: str
    """"max" when higher is better, "min" when lower is."""
    tasks: tuple[str, ...]
    scale: float | None = None
    """Values lie in [0, scale] (F1 in percent: 100; accuracy as a fraction: 1); None: unbounded."""

    @property
    def maximise(self) -> bool:
        return self.mode == "max"

    def better(self, a: float, b: float) -> bool:
        """Whether `a` is strictly better than `b`."""
        return a > b if self.maximise else a < b

    def reached(self, value: float, target: float) -> bool:
        """Whether `value` is at or past `target` (at or above for "max", at or below for "min")."""
        return value >= target if self.maximise else value <= target

    def unit_hint(self) -> str:
        if self.scale == 100.0:
            return "a percentage 0-100"
        if self.scale == 1.0:
            return "a fraction 0-1"
        return "any finite value"


TASKS = ("squad", "mlm")

METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("f1", "F1 (%)", "max", ("squad",), 100.0),
    Metric("em", "exact match (%)", "max", ("squad",), 100.0),
    Metric("mlm_acc", "MLM accuracy", "max", ("mlm",), 1.0),
    Metric("eval_loss", "evaluation loss", "min", ("mlm",)),
    Metric("loss", "training loss", "min", TASKS),
)}
# The metric a task is judged by, first where a default is needed (plots, summaries, ASHA).
PRIMARY_METRIC = {"squad": "f1", "mlm": "mlm_acc"}

COLUMNS: tuple[Column, ...] = (
    Column("run_id", "str", "the run's name (a sweep's trial runs under its trial id)"),
    Column("trial_id", "str", "the Tune trial id; empty for a plain run"),
    Column("task", "str", "`squad` or `mlm`", config=True),
    Column("model", "str", "`model.name` as the job gives it", config=True),
    Column("optimizer", "str", "`optimizer.name`", config=True),
    Column("lr", "float", "the scheduled learning rate at this evaluation"),
    Column("peak_lr", "float", "the phase's peak LR, after the LR rule moved it to the phase's global batch",
           config=True),
    Column("lr_rule", "str", "`sqrt`, `linear` or `none`", config=True),
    Column("per_worker_batch", "int", "micro-batch per worker", config=True),
    Column("grad_accum", "int", "micro-batches per optimizer step (an elastic run's follows its worker count)",
           config=True),
    Column("num_workers", "int", "data-parallel ranks this evaluation's steps ran on (1 for a run in the calling "
                                 "process; an elastic run's changes when it shrinks or grows)", config=True),
    Column("global_batch", "int", "samples per optimizer step = per_worker_batch × num_workers × grad_accum",
           config=True),
    Column("scaling_mode", "str", "`weak`, `strong` or empty: what a change of worker count keeps", config=True),
    Column("seed", "int", "`train.seed`", config=True),
    Column("device", "str", "the workers' device type (`cpu`, `cuda`)", config=True),
    Column("phase", "int", "the training phase, from 1"),
    Column("seq_len", "int", "tokens per sequence in this phase"),
    Column("step", "int", "optimizer steps taken so far"),
    Column("samples", "int", "training samples seen so far, all workers together"),
    Column("train_time_s", "float", "seconds spent training so far (evaluation and start-up excluded)"),
    Column("wall_time_s", "float", "seconds since the run started"),
    Column("throughput", "float", "training samples/s over the window since the previous evaluation"),
    Column("loss", "float", "mean training loss over that window, all workers"),
    Column("f1", "float", "SQuAD v1.1 F1 on the dev set, in percent (squad)"),
    Column("em", "float", "SQuAD v1.1 exact match on the dev set, in percent (squad)"),
    Column("mlm_acc", "float", "masked-token accuracy on the held-out text, a fraction (mlm)"),
    Column("eval_loss", "float", "mean masked-token loss on the held-out text (mlm)"),
    Column("time_compute_s", "float",
           "mean seconds per step of data, forward and backward in the window, all-reduce excluded"),
    Column("time_allreduce_s", "float", "mean seconds per step of gradient all-reduce not hidden "
           "behind backward: 0 on one worker, measured on several when `grad_accum > 1`, empty otherwise"),
    Column("time_optimizer_s", "float", "mean seconds per step of the optimizer step"),
    # The gradient noise scale (`scaling_study.answers.noise`): exponential moving averages over
    # every step so far (about the last 20 weigh most), restarted at each phase; not over the window.
    Column("grad_noise_scale", "float", "smoothed B_simple = tr(Σ)/‖G‖² in samples (McCandlish et al. 2018, "
           "A.1); empty with one worker and no accumulation, or before ‖G‖² is positive"),
    Column("grad_norm_sq", "float", "smoothed unbiased estimate of ‖G‖², the squared norm of the true gradient"),
    Column("grad_trace", "float",
           "smoothed unbiased estimate of tr(Σ), the per-sample gradient variance summed over parameters"),
    Column("target_metric", "str", "`eval.target.metric`, empty without a target"),
    Column("target_value", "float", "`eval.target.value`"),
    Column("target_reached", "bool", "whether this evaluation reached the target"),
)
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)

# Columns of a sweep's trials.csv beyond the records' (one row per trial).
TRIAL_COLUMNS: tuple[Column, ...] = (
    Column("status", "str", "DONE, STOPPED (by the scheduler) or ERROR"),
    Column("stopped_early", "bool", "whether the scheduler stopped the trial before its last step"),
    Column("error", "str", "the error's message for a trial that failed"),
)
# Prefix of the swept hyperparameters' columns in a sweep's tables (`hp.optimizer.lr`).
HP_PREFIX = "hp."
# Columns that order the evaluations of one run, most precise first.
PROGRESS_COLUMNS = ("step", "samples", "train_time_s")


def _names(dtype: str, columns=COLUMNS + TRIAL_COLUMNS) -> tuple[str, ...]:
    return tuple(c.name for c in columns if c.dtype == dtype)


STRING_COLUMNS = _names("str")
INT_COLUMNS = _names("int")
NUMERIC_COLUMNS = INT_COLUMNS + _names("float")
BOOL_COLUMNS = _names("bool")
CONFIG_COLUMNS = tuple(c.name for c in COLUMNS if c.config)


def metric(name: str, key: str = "metric") -> Metric:
    """The metric called `name`; UserError naming `key` and the valid metrics otherwise."""
    try:
        return METRICS[name]
    except KeyError:
        raise UserError(f"{key} {name!r}: valid metrics are {', '.join(METRICS)}") from None


def task_metrics(task: str) -> tuple[str, ...]:
    """The metrics a run of `task` records, its primary metric first."""
    names = [m.name for m in METRICS.values() if task in m.tasks]
    return tuple(sorted(names, key=lambda n: n != PRIMARY_METRIC[task]))


def metric_label(name: str) -> str:
    """A metric's axis label; other columns keep their name."""
    return METRICS[name].label if name in METRICS else name
