"""The dashboard sections of the answers: each computes its tables and notes from the records,
in the shape `reports.build` expects of a section, `(tables, notes)`, and raises UserError (a
`MissingColumns` naming the files) when its inputs are absent, so the section is shown as skipped.
Drawing is `answers.figures`."""
from __future__ import annotations

import pandas as pd

from scaling_study.answers.checks import check_model, check_published, profile_from_records
from scaling_study.answers.noise import noise_scale_curves
from scaling_study.answers.projection import WORKER_COUNTS, project, with_time_to_target
from scaling_study.answers.recommend import Plan, recommend
from scaling_study.answers.tradeoff import TradeoffFit, steps_to_target, tradeoff_table
from scaling_study.errors import UserError
from scaling_study.results.records import Needs
from scaling_study.results.targets import Target

TITLES = {
    "tradeoff": "Steps to target against batch size: the critical batch",
    "noise": "Gradient noise scale",
    "projection": "Projected scaling to many GPUs",
    "recommendation": "Recommendation per worker count",
}
PROJECTION = Needs("projected scaling", ("optimizer",))
RECOMMENDATION = Needs("recommendation per worker count", ("num_workers",))

DEFINITIONS = {
    "noise": (
        "Gradient noise scale B_simple = tr(Σ)/|G|² (McCandlish et al. 2018, appendix A.1) over "
        "training: unbiased |G|² and tr(Σ) from each worker's local gradient and the all-reduced "
        "one (or micro-batches against their sum on one worker), each smoothed by a moving average, "
        "then their ratio. In samples: the batch size at which gradient noise and signal are equal."
    ),
    "tradeoff": (
        "Optimizer steps to the target against global batch, each batch at its best setting (the "
        "LR, and any other swept hyperparameter, that reached the target most often, then soonest), "
        "fitted to S = S_min (1 + B_crit/B) (McCandlish et al. 2018, eq. 2.11); B_crit = E_min/S_min "
        "beside the measured noise scale at the target."
    ),
    "projection": (
        "Projected step time and weak-scaling efficiency at 8 … 1024 GPUs: k × micro-batch compute "
        "(measured) + exposed all-reduce (α-β model of the named interconnect, DDP buckets) + "
        "optimizer step (measured); time to target = S(B) × step time inside the measured batch range."
    ),
    "recommendation": (
        "Per worker count: the optimizer, global batch, peak LR (and the rule that moved it), "
        "accumulation and expected train time to the target — measured where a run at N reached it, "
        "else projected from the tradeoff fit and the step-time model."
    ),
}


def noise_section(records: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """{"noise_scale": noise_scale_curves}; a note for runs that record no noise scale."""
    curves = noise_scale_curves(records)
    missing = sorted(set(records["run"]) - set(curves["run"]))
    notes = [f"no noise scale in {len(missing)} run(s) (one worker without accumulation, or older records): "
             f"{', '.join(missing[:10])}"] if missing else []
    return {"noise_scale": curves}, notes


def tradeoff_section(records: pd.DataFrame, target: Target | None) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """{"steps_to_target": best setting per batch, "tradeoff_fit": one row per optimizer}."""
    if target is None:
        raise UserError("no target: steps to target need --target-metric and --target")
    points = steps_to_target(records, target)
    if points["steps"].isna().all():
        raise UserError(f"no run reached {target}: steps to target need runs that reached it")
    fits = tradeoff_table(records, target, points)
    notes = [f"{row['optimizer']}: {row['note']}" for _, row in fits.iterrows() if row["note"]]
    return {"steps_to_target": points, "tradeoff_fit": fits}, notes


def projection_section(records: pd.DataFrame, target: Target | None, plan: Plan,
                       workers=WORKER_COUNTS) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """{"projection": per optimizer × N × k, "model_check": 1 → 2 workers, "allreduce_check":
    published points}. Time to target where a target and a tradeoff fit exist. An optimizer
    whose runs lack timings is left out with a note; UserError when none has them."""
    PROJECTION.check(records)
    workers, notes = reachable_workers(workers, plan)
    fits = _fits_by_optimizer(records, target)
    tables = []
    for optimizer in sorted(records["optimizer"].dropna().unique()):
        try:
            profile = profile_from_records(records, plan.grad_bytes, optimizer, plan.overlap)
        except UserError as exc:
            notes.append(f"{optimizer} left out: {exc}")
            continue
        table = project(profile, plan.cluster, plan.algorithm, workers, plan.accums)
        if optimizer in fits:
            table = with_time_to_target(table, fits[optimizer])
        tables.append(table.assign(optimizer=optimizer))
    if not tables:
        raise UserError("no optimizer's runs record the step timings: " + "; ".join(notes))
    out = {"projection": pd.concat(tables, ignore_index=True), "allreduce_check": check_published()}
    try:
        out["model_check"] = check_model(records)
    except UserError as exc:
        notes.append(f"1 → 2 worker model check skipped: {exc}")
    else:
        if out["model_check"].empty:
            del out["model_check"]
            notes.append("1 → 2 worker model check skipped: no group has runs at 1 and 2 workers "
                         "with time_allreduce_s (measured when grad_accum > 1)")
    return out, notes


def reachable_workers(workers, plan: Plan) -> tuple[list[int], list[str]]:
    """The worker counts `plan.cluster` can hold: all of them with a network between nodes, else
    one node's worth (with a note saying which were left out and how to add a network)."""
    node = plan.cluster.gpus_per_node
    if plan.cluster.network is not None:
        return list(workers), []
    kept = [n for n in workers if n <= node]
    dropped = [n for n in workers if n > node]
    note = [f"{plan.cluster} has no network between nodes: no projection beyond {node} GPUs "
            f"(left out {', '.join(map(str, dropped))}); add one, e.g. --cluster {plan.cluster.intra.name}+8xnet400"]
    return kept, note if dropped else []


def recommendation_section(records: pd.DataFrame, target: Target | None, plan: Plan | None,
                           workers=WORKER_COUNTS) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """{"recommendation": one row per worker count (the records' own counts and `workers`)}."""
    if target is None:
        raise UserError("no target: a recommendation needs --target-metric and --target")
    RECOMMENDATION.check(records)
    workers, notes = reachable_workers(workers, plan) if plan is not None else (list(workers), [])
    counts = set(workers) | set(records["num_workers"].dropna().astype(int))
    return {"recommendation": recommend(records, target, sorted(counts), plan)}, notes


def _fits_by_optimizer(records: pd.DataFrame, target: Target | None) -> dict[str, TradeoffFit]:
    if target is None:
        return {}
    try:
        table = tradeoff_table(records, target).dropna(subset=["s_min"])
    except UserError:
        return {}
    # First group per optimizer, as `recommend` does (a report is of one task and model).
    return {opt: TradeoffFit.from_row(rows.iloc[0]) for opt, rows in table.groupby("optimizer", sort=False)}
