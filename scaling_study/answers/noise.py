"""The gradient noise scale B_simple = tr(Σ)/|G|², measured for free during data-parallel training.

References: McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of Large-Batch Training"
(arXiv:1812.06162), section 2.2 and appendix A.1.

For a gradient estimated from a batch of B samples, E|G_B|² = |G|² + tr(Σ)/B, where G is the true
gradient and Σ the per-sample gradient covariance. Two batch sizes B_small < B_big give unbiased
estimates of both terms (appendix A.1):

    |G|²  ≈ (B_big |G_big|² − B_small |G_small|²) / (B_big − B_small)
    tr(Σ) ≈ (|G_small|² − |G_big|²) / (1/B_small − 1/B_big)

Data parallelism has both at hand every step: each worker's local gradient (B_small = per-worker
batch × accumulation) before the all-reduce and the all-reduced one (B_big = global batch) after.
Averaging |G_small|² over workers keeps it unbiased and lowers its variance. With one worker, the
micro-batches of gradient accumulation play the workers' part (B_small = micro-batch, B_big =
micro-batch × accumulation). Each estimate is noisy, so, as the paper does, each is smoothed by an
exponential moving average and B_simple is the ratio of the two averages (a ratio of averages,
not an average of ratios, which would be biased).

The estimator here is plain arithmetic on floats; `scaling_study.answers.noise_hooks` collects the
squared norms on the device (a DDP communication hook, or gradient hooks for one worker).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from scaling_study.results.records import Needs, ordered

# Weight of the past in the moving averages. 0.95 averages over ~20 steps, the default
# evaluation interval (`eval.every_steps`), so each record summarises about its own window.
DEFAULT_DECAY = 0.95

# Record columns this module fills; the contract (`scaling_study.contract.COLUMNS`) defines them.
NOISE_COLUMNS = ("grad_noise_scale", "grad_norm_sq", "grad_trace")


def unbiased_estimates(small_sq: float, big_sq: float, b_small: float, b_big: float) -> tuple[float, float]:
    """(|G|², tr(Σ)) from one step's squared gradient norms at two batch sizes (paper, A.1).

    `small_sq` is |G_small|² (averaged over the workers or micro-batches that give it), `big_sq`
    is |G_big|². Either estimate may come out negative on a single step; only averages are
    meaningful. Raises ValueError unless 0 < b_small < b_big.
    """
    if not 0 < b_small < b_big:
        raise ValueError(f"need 0 < B_small < B_big, got B_small={b_small}, B_big={b_big}")
    g2 = (b_big * big_sq - b_small * small_sq) / (b_big - b_small)
    trace = (small_sq - big_sq) / (1.0 / b_small - 1.0 / b_big)
    return g2, trace


@dataclass
class NoiseScale:
    """Moving averages of the unbiased |G|² and tr(Σ) estimates, and their ratio B_simple.

    The averages are bias-corrected (divided by 1 − decay^n, as Adam does), so the first records
    are not pulled towards zero. Steps whose norms are not finite (an fp16 overflow) are skipped.
    Call `reset()` when the batch or sequence length changes (a new phase): the noise scale is in
    samples of the current shape.
    """

    decay: float = DEFAULT_DECAY
    g2_sum: float = 0.0
    trace_sum: float = 0.0
    weight: float = 0.0
    steps: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.decay < 1.0:
            raise ValueError(f"decay={self.decay!r}: expected 0 <= decay < 1")

    def update(self, small_sq: float, big_sq: float, b_small: float, b_big: float) -> bool:
        """Fold in one step; returns False (and changes nothing) for non-finite norms."""
        if not (math.isfinite(small_sq) and math.isfinite(big_sq)):
            return False
        g2, trace = unbiased_estimates(small_sq, big_sq, b_small, b_big)
        d = self.decay
        self.g2_sum = d * self.g2_sum + (1 - d) * g2
        self.trace_sum = d * self.trace_sum + (1 - d) * trace
        self.weight = d * self.weight + (1 - d)
        self.steps += 1
        return True

    @property
    def grad_norm_sq(self) -> float:
        """Smoothed |G|² (NaN before the first step)."""
        return self.g2_sum / self.weight if self.weight > 0 else math.nan

    @property
    def grad_trace(self) -> float:
        """Smoothed tr(Σ), the per-sample gradient variance summed over parameters."""
        return self.trace_sum / self.weight if self.weight > 0 else math.nan

    @property
    def b_simple(self) -> float:
        """tr(Σ)/|G|² in samples; NaN until the smoothed |G|² is positive."""
        g2 = self.grad_norm_sq
        return self.grad_trace / g2 if g2 > 0 else math.nan

    def record(self) -> dict[str, float]:
        """The record columns: grad_noise_scale (B_simple), grad_norm_sq, grad_trace."""
        return dict(zip(NOISE_COLUMNS, (self.b_simple, self.grad_norm_sq, self.grad_trace)))

    def reset(self) -> None:
        self.g2_sum = self.trace_sum = self.weight = 0.0
        self.steps = 0

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so a resumed run continues its averages."""
        return {"decay": self.decay, "g2_sum": self.g2_sum, "trace_sum": self.trace_sum,
                "weight": self.weight, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        for key, value in self.state_dict().items():
            setattr(self, key, type(value)(state.get(key, value)))


def batch_sizes(per_worker_batch: int, grad_accum: int, num_workers: int) -> tuple[int, int] | None:
    """(B_small, B_big) of a step, or None where the step has only one batch size to compare.

    Several workers: (per-worker batch × accumulation, global batch). One worker with
    accumulation: (micro-batch, micro-batch × accumulation). One worker without: None.
    """
    if num_workers > 1:
        local = per_worker_batch * grad_accum
        return local, local * num_workers
    if grad_accum > 1:
        return per_worker_batch, per_worker_batch * grad_accum
    return None


def noise_scale_curves(records: pd.DataFrame) -> pd.DataFrame:
    """The smoothed noise scale over training, per run: run, the configuration that tells runs
    apart on a chart (task, optimizer, num_workers, global_batch, where recorded), step, samples,
    train_time_s and grad_noise_scale, one row per evaluation that has it, in training order.

    Raises MissingColumns (a UserError naming the files) when no row has a noise scale.
    """
    Needs("gradient noise scale over training", ("grad_noise_scale",)).check(records)
    config = [c for c in ("task", "optimizer", "num_workers", "global_batch") if c in records.columns]
    progress = [c for c in ("step", "samples", "train_time_s") if c in records.columns]
    rows = ordered(records.dropna(subset=["grad_noise_scale"]))
    return rows[["run", *config, *progress, "grad_noise_scale"]].reset_index(drop=True)
