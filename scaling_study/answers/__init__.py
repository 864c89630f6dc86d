"""Answers to "for N GPUs, which optimizer, batch size and LR, and how long to the target F1?".

- `noise`: the gradient noise scale B_simple (McCandlish et al. 2018, appendix A.1), smoothed;
  `noise_hooks` collects its norms during training (a DDP communication hook; torch).
- `tradeoff`: steps and samples to the target against batch size, fitted to
  (S/S_min − 1)(E/E_min − 1) = 1, giving S_min, E_min and B_crit.
- `projection`: α-β all-reduce model, projected step time, weak-scaling efficiency and time to
  target at 8 … 1024 GPUs; `checks`: its inputs from records and its checks.
- `recommend`: one recommendation per worker count, measured or projected.

Everything but `noise_hooks` is pure (pandas/numpy) over the records table.
"""
from scaling_study.answers.checks import check_model, check_published, profile_from_records
from scaling_study.answers.noise import NOISE_COLUMNS, NoiseScale, noise_scale_curves, unbiased_estimates
from scaling_study.answers.projection import (
    LINKS, Cluster, Profile, allreduce_time, parse_cluster, project, step_time, with_time_to_target,
)
from scaling_study.answers.recommend import Plan, job_overrides, recommend
from scaling_study.answers.tradeoff import TradeoffFit, fit_tradeoff, steps_to_target, tradeoff_table

__all__ = [
    "NOISE_COLUMNS", "NoiseScale", "noise_scale_curves", "unbiased_estimates",
    "TradeoffFit", "fit_tradeoff", "steps_to_target", "tradeoff_table",
    "LINKS", "Cluster", "Profile", "allreduce_time", "parse_cluster", "project", "step_time",
    "with_time_to_target", "check_model", "check_published", "profile_from_records",
    "Plan", "job_overrides", "recommend",
]
