"""Answers to "for N GPUs, which optimizer, batch size and LR, and how long to the target F1?".

- `noise`: the gradient noise scale B_simple (McCandlish et al. 2018, appendix A.1), smoothed;
  `noise_hooks` collects its norms during training (a DDP communication hook; torch).
- `tradeoff`: steps and samples to the target against batch size (each run's crossing an
  interval; unreached batches censored), fitted to (S/S_min − 1)(E/E_min − 1) = 1, giving S_min,
  E_min and B_crit; `intervals`: their bootstrap intervals; `holdout`: the fit to the smaller
  batches predicting the larger; `published`: the same from a plain steps-to-target table.
- `links`: the interconnects (links, clusters); `projection`: α-β all-reduce model, projected
  step time, weak-scaling efficiency and time to target at 8 … 1024 GPUs; `device`: the compute
  of the GPU projected (a measured or a named device profile); `checks`: the projection's inputs
  and its checks.
- `recommend`: one recommendation per worker count, measured or projected; `plan`: the plan a
  projection needs, from the user's options and the records (gradient bytes from the model).
- `sections` and `figures`: the dashboard's sections (tables, then their charts).

Everything but `noise_hooks` is pure (pandas/numpy) over the records table. The names below are
loaded on first use (PEP 562), so that `links` stays cheap for the command line's help.
"""
from __future__ import annotations

import importlib

_WHERE = {
    "check_model": "checks", "check_published": "checks", "profile_from_records": "checks",
    "NOISE_COLUMNS": "noise", "NoiseScale": "noise", "noise_scale_curves": "noise",
    "unbiased_estimates": "noise",
    "LINKS": "links", "Cluster": "links", "parse_cluster": "links", "DEFAULT_CLUSTER": "links",
    "Profile": "projection", "allreduce_time": "projection", "project": "projection",
    "step_time": "projection", "with_time_to_target": "projection",
    "Plan": "recommend", "job_overrides": "recommend", "recommend": "recommend",
    "PlanOptions": "plan",
    "TradeoffFit": "tradeoff", "fit_tradeoff": "tradeoff", "steps_to_target": "tradeoff",
    "tradeoff_table": "tradeoff", "fit_runs": "tradeoff", "tradeoff_holdout": "holdout",
    "read_steps_table": "published", "load_device_profile": "device", "profile_for": "checks",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
