"""Exploring a sweep's hyperparameters: which values led where, and which of them mattered.

Pure functions over the records table. `outcomes` is the table behind every view here: one row per
trial with its swept values, its best value of the metric and when it ran (trials numbered in the
order Tune made them). From it: the parallel coordinates and slice plots draw each trial, the
best-so-far history follows the sweep's best value trial by trial, and `importance` says how much
each swept value explains the outcome.

Importance is optuna's PED-ANOVA (`optuna.importance.PedAnovaImportanceEvaluator`; Watanabe et
al., "PED-ANOVA: Efficiently Quantifying Hyperparameter Importance in Arbitrary Subspaces",
IJCAI 2023). It compares, per hyperparameter, the distribution of the top trials' values with that
of all trials (a Pearson divergence of two Parzen estimates), which needs no surrogate model: it
is closed-form, takes milliseconds, and gives usable answers for the tens of trials a scaling
sweep has, where fANOVA's random forest (optuna's default evaluator) needs many more trials to be
stable and seconds per call.
"""
from __future__ import annotations

import re

import pandas as pd

from scaling_study.contract import CONFIG_COLUMNS, HP_PREFIX, METRICS, metric_label
from scaling_study.errors import UserError

OUTCOME = "value"
"""The column of `outcomes` with each trial's best value of the metric."""
_EXTRA_PARAMS = ("peak_lr",)  # not a configuration column, but what runs without hp.* differ by
_ORDER = re.compile(r"(\d+)")
LOG_PARAM = re.compile(r"(^|[._])(lr|learning_rate|peak_lr|weight_decay)$|batch")
"""Hyperparameters drawn on log axes: learning rates and batch sizes span decades."""

DEFINITIONS = {
    "parallel": "One line per trial across its swept values, coloured by its best value of the metric. "
                "Learning rates and batch sizes are on log axes. Drag along an axis to keep only the trials "
                "in that range.",
    "importance": "How much each swept value explains which trials did best: optuna's PED-ANOVA importance "
                  "(the divergence between the values of the top 10% of trials and those of all trials), "
                  "normalised to sum to 1. Few trials make it rough; read it with the slice plots.",
    "history": "Each trial's best value of the metric in the order the trials were made, and the best so far.",
    "slices": "Each trial's best value of the metric against one swept value at a time.",
}


def _metric_of(x) -> str:
    if x.metric is None:
        raise UserError("no metric recorded (f1, mlm_acc or em)")
    return x.metric


def swept(records: pd.DataFrame) -> list[str]:
    """The columns that tell trials apart: the swept `hp.*` values that vary, else the
    configuration columns that vary between runs."""
    hp = [c for c in records.columns if c.startswith(HP_PREFIX)]
    candidates = hp or [c for c in dict.fromkeys((*CONFIG_COLUMNS, *_EXTRA_PARAMS)) if c in records.columns]
    by_run = records.groupby("run", sort=False)[candidates].first() if candidates else pd.DataFrame()
    return [c for c in candidates if by_run[c].astype(str).nunique() > 1]


def param_name(column: str) -> str:
    """`hp.optimizer.lr` -> `optimizer.lr`."""
    return column[len(HP_PREFIX):] if column.startswith(HP_PREFIX) else column


def _natural(label: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in _ORDER.split(str(label)))


def outcomes(records: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per trial: `number` (1.. in the order trials were made), `run`, its swept values
    (named as `swept` names them), `value` (its best value of `metric`), `samples` and
    `train_time_s` (how far it got)."""
    if metric not in records.columns:
        raise UserError(f"the records have no {metric} column")
    params = swept(records)
    best = "max" if METRICS[metric].maximise else "min"
    rows = records.dropna(subset=[metric]).groupby("run", sort=False)
    table = rows[params].first() if params else pd.DataFrame(index=rows.size().index)
    table[OUTCOME] = rows[metric].agg(best)
    for col in ("samples", "train_time_s"):
        if col in records.columns:
            table[col] = rows[col].max()
    table = table.reset_index()
    table = table.iloc[sorted(range(len(table)), key=lambda i: _natural(table["run"].iloc[i]))]
    table.insert(0, "number", range(1, len(table) + 1))
    return table.reset_index(drop=True)


def best_so_far(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`outcomes` in trial order with `best_so_far`: the best value up to and including each trial."""
    out = table[["number", "run", OUTCOME]].copy()
    values = out[OUTCOME]
    out["best_so_far"] = values.cummax() if METRICS[metric].maximise else values.cummin()
    return out


def importance(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """`param`, `importance` (PED-ANOVA, summing to 1) of each swept value, most important first."""
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    params = [c for c in table.columns if c not in ("number", "run", OUTCOME, "samples", "train_time_s")]
    if len(table) < 4 or not params:
        raise UserError(f"{len(table)} trial(s) with {len(params)} swept value(s): importance needs at least "
                        "4 trials and one value that varies")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize" if METRICS[metric].maximise else "minimize")
    dists = {param_name(c): _distribution(table[c]) for c in params}
    for _, row in table.iterrows():
        values = {param_name(c): _value(row[c], dists[param_name(c)]) for c in params}
        study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=float(row[OUTCOME])))
    try:
        found = get_param_importances(study, evaluator=PedAnovaImportanceEvaluator())
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:  # e.g. every trial ties: nothing to rank
        raise UserError(f"importance could not be estimated from these {len(table)} trials: {exc}") from None
    return pd.DataFrame({"param": list(found), "importance": list(found.values())})


def _distribution(values: pd.Series):
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    numbers = pd.to_numeric(values, errors="coerce")
    if numbers.notna().all() and values.map(lambda v: not isinstance(v, bool)).all():
        low, high = float(numbers.min()), float(numbers.max())
        return FloatDistribution(low, high, log=low > 0 and bool(LOG_PARAM.search(values.name or "")))
    return CategoricalDistribution(sorted({str(v) for v in values}))


def _value(value, dist):
    from optuna.distributions import CategoricalDistribution

    return str(value) if isinstance(dist, CategoricalDistribution) else float(value)


def log_axis(column: str, values: pd.Series) -> bool:
    """Whether a swept value is drawn on a log axis (learning rates and batch sizes, when positive)."""
    numbers = pd.to_numeric(values, errors="coerce")
    return bool(LOG_PARAM.search(param_name(column))) and numbers.notna().all() and bool((numbers > 0).all())


# --- the report's sections: (key, title, definition, compute) as reports.build lists them -------

def _parallel(x):
    table = outcomes(x.records, _metric_of(x))
    if len(table) < 2 or not swept(x.records):
        raise UserError("fewer than 2 trials, or no swept value that varies")
    return {"trial_outcomes": table}, []


def _importance(x):
    metric = _metric_of(x)
    table = outcomes(x.records, metric)
    return {"param_importance": importance(table, metric)}, [
        f"over {len(table)} trials, by each trial's best {metric_label(metric)}"]


def _history(x):
    metric = _metric_of(x)
    return {"best_so_far": best_so_far(outcomes(x.records, metric), metric)}, []


def _slices(x):
    table = outcomes(x.records, _metric_of(x))
    if not swept(x.records):
        raise UserError("no swept value varies between the trials")
    return {"trial_outcomes": table}, []


SECTIONS = (
    ("parallel", "Hyperparameters: parallel coordinates", DEFINITIONS["parallel"], _parallel),
    ("importance", "Hyperparameter importance", DEFINITIONS["importance"], _importance),
    ("history", "Best value so far", DEFINITIONS["history"], _history),
    ("slices", "Slices: the metric against each hyperparameter", DEFINITIONS["slices"], _slices),
)
"""The exploring sections, in the order the dashboard shows them."""
