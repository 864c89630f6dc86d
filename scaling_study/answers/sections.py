"""The dashboard sections of the answers: each computes its tables and notes from the records,
in the shape `reports.build` expects of a section, `(tables, notes)`, and raises UserError (a
`MissingColumns` naming the files) when its inputs are absent, so the section is shown as skipped.
Drawing is `answers.figures`."""
from __future__ import annotations

import pandas as pd

from scaling_study.answers.checks import check_model, check_published, profile_for
from scaling_study.answers.holdout import tradeoff_holdout
from scaling_study.answers.noise import noise_scale_curves
from scaling_study.answers.projection import WORKER_COUNTS, project, with_time_to_target
from scaling_study.answers.recommend import Plan, recommend
from scaling_study.answers.tradeoff import GROUP_KEYS, TradeoffFit, best_settings, fit_table, measured_noise_scale, tradeoff_curve
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
# The recommendation answers for one GPU up to 1,024, and for the records' own worker counts.
RECOMMEND_WORKERS = (1, 2, 4, *WORKER_COUNTS)
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
        "beside the measured noise scale at the target. Each run crossed the target between its last "
        "evaluation below it and its first at it (the bars); bands and *_lo/*_hi columns are 95 % "
        "bootstrap intervals over batches, runs and that crossing. tradeoff_holdout: the fit to the "
        "smaller batches predicting the larger ones."
    ),
    "projection": (
        "Projected step time and weak-scaling efficiency at 8 … 1024 GPUs: k × micro-batch compute "
        "(measured) + exposed all-reduce (α-β model of the named interconnect, DDP buckets) + "
        "optimizer step, with compute and optimizer from the records' GPUs or a device profile; time to "
        "target = S(B) × step time with its bootstrap interval (dashed beyond the measured batches)."
    ),
    "recommendation": (
        "Per worker count: the optimizer, global batch, peak LR (and the rule that moved it), "
        "accumulation and expected train time to the target with its interval — measured where a run "
        "at N reached it, else projected from the tradeoff fit and the step-time model (extrapolated "
        "where N's batches lie beyond the measured ones: bounded below by S_min and E_min)."
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
    """{"steps_to_target": best setting per batch, "tradeoff_fit": one row per optimizer,
    "tradeoff_holdout", "tradeoff_curve"}; notes for fits and for best LRs on their grid's edge."""
    if target is None:
        raise UserError("no target: steps to target need --target-metric and --target")
    points, runs = best_settings(records, target)
    if points["steps"].isna().all():
        raise UserError(f"no run reached {target}: steps to target need runs that reached it")
    keys = [k for k in GROUP_KEYS if k in points.columns]
    fits, by_key = fit_table(points, runs, keys)
    noise = measured_noise_scale(records, target, keys, runs)
    if not fits.empty and not noise.empty:
        fits = fits.drop(columns=["b_noise_at_target", "b_noise_mean"]).merge(noise, on=keys, how="left")
    notes = [f"{row['optimizer']}: {row['note']}" for _, row in fits.iterrows() if row["note"]]
    tables = {"steps_to_target": points, "tradeoff_fit": fits, "tradeoff_holdout": tradeoff_holdout(points, runs, keys),
              "tradeoff_curve": tradeoff_curve(by_key, keys)}
    return tables, notes + edge_notes(points)


def edge_notes(points: pd.DataFrame) -> list[str]:
    """One note per optimizer whose best LR lies on the edge of the LRs tried at some batch: the
    best may lie beyond the grid, and those batches' steps are then upper bounds."""
    notes = []
    for optimizer, part in points[points["lr_edge"] != ""].groupby("optimizer", sort=True):
        where = ", ".join(f"{b:g} ({edge})" for b, edge in zip(part["global_batch"], part["lr_edge"]))
        notes.append(f"{optimizer}: the best LR is on the edge of its grid at batch {where}: a wider grid "
                     "could lower those batches' steps")
    return notes


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
            profile = profile_for(records, plan, optimizer)
        except UserError as exc:
            notes.append(f"{optimizer} left out: {exc}")
            continue
        table = project(profile, plan.cluster, plan.algorithm, workers, plan.accums)
        if optimizer in fits:
            table = with_time_to_target(table, fits[optimizer], extrapolate=True)
        tables.append(table.assign(optimizer=optimizer))
    if not tables:
        raise UserError("no optimizer can be projected: " + "; ".join(notes))
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
                           workers=RECOMMEND_WORKERS) -> tuple[dict[str, pd.DataFrame], list[str]]:
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
        points, runs = best_settings(records, target)
    except UserError:
        return {}
    keys = [k for k in GROUP_KEYS if k in points.columns]
    fits = {}
    # First group per optimizer, as `recommend` does (a report is of one task and model).
    for key, fit in fit_table(points, runs, keys)[1].items():
        fits.setdefault(dict(zip(keys, key)).get("optimizer", ""), fit)
    return fits
