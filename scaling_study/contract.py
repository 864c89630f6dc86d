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
    Column("run_id", "str", "the run's name (a sweep's trial: its trial id)"),
    Column("trial_id", "str", "the Tune trial id; empty for a single run"),
    Column("task", "str", "squad or mlm", config=True),
    Column("model", "str", "model.name of the job", config=True),
    Column("optimizer", "str", "optimizer.name of the job", config=True),
    Column("lr", "float", "the learning rate the schedule gave at this evaluation"),
    Column("peak_lr", "float", "the phase's peak LR after the batch-size rule", config=True),
    Column("lr_rule", "str", "how the peak LR follows the global batch: sqrt, linear or none", config=True),
    Column("per_worker_batch", "int", "examples per worker per micro-batch", config=True),
    Column("grad_accum", "int", "micro-batches accumulated per optimizer step", config=True),
    Column("num_workers", "int", "data-parallel workers (0: one rank in the driver process)", config=True),
    Column("global_batch", "int", "examples per optimizer step over all workers", config=True),
    Column("scaling_mode", "str", "weak or strong: how the batch follows the worker count", config=True),
    Column("seed", "int", "train.seed", config=True),
    Column("device", "str", "cpu or cuda", config=True),
    Column("phase", "int", "the training phase, from 1"),
    Column("seq_len", "int", "tokens per sequence in this phase"),
    Column("step", "int", "optimizer steps done, over all phases"),
    Column("samples", "int", "training examples seen, over all phases and workers"),
    Column("train_time_s", "float", "training time (evaluation excluded), carried across restarts"),
    Column("wall_time_s", "float", "wall time since the run started, carried across restarts"),
    Column("throughput", "float", "training samples per second since the previous evaluation"),
    Column("loss", "float", "mean training loss since the previous evaluation"),
    Column("f1", "float", "SQuAD v1.1 F1 in percent (squad)"),
    Column("em", "float", "SQuAD v1.1 exact match in percent (squad)"),
    Column("mlm_acc", "float", "masked-LM accuracy on the held-out split, a fraction (mlm)"),
    Column("eval_loss", "float", "masked-LM loss on the held-out split (mlm)"),
    Column("time_compute_s", "float", "forward and backward seconds per step"),
    Column("time_allreduce_s", "float", "exposed all-reduce seconds per step (NaN where not measurable)"),
    Column("time_optimizer_s", "float", "clip, optimizer step and schedule seconds per step"),
    Column("target_metric", "str", "eval.target.metric of the job; empty without a target"),
    Column("target_value", "float", "eval.target.value of the job"),
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
