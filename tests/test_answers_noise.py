"""The noise-scale estimator (McCandlish et al. 2018, appendix A.1) on a problem whose gradient mean
and covariance are known in closed form, and its bookkeeping."""
import math

import numpy as np
import pandas as pd
import pytest

from scaling_study.answers.noise import NoiseScale, batch_sizes, noise_scale_curves, unbiased_estimates
from scaling_study.errors import UserError


def linear_regression_truth(d, delta, sigma):
    """Per-sample gradient g = x (xᵀδ − ε), x ~ N(0, I_d), ε ~ N(0, σ²), δ = w − w*.

    G = E[g] = δ. By Isserlis' theorem E[x xᵀ (xᵀδ)²] = |δ|² I + 2 δδᵀ, so
    Σ = E[g gᵀ] − G Gᵀ = (|δ|² + σ²) I + δδᵀ and tr Σ = d (|δ|² + σ²) + |δ|².
    """
    g2 = float(delta @ delta)
    return g2, d * (g2 + sigma**2) + g2


def simulate(rng, d, delta, sigma, workers, per_worker, steps):
    """Per step: the mean over workers of each local gradient's |g|², and |all-reduced g|²."""
    x = rng.standard_normal((steps, workers, per_worker, d))
    residual = x @ delta - sigma * rng.standard_normal((steps, workers, per_worker))
    local = (x * residual[..., None]).mean(axis=2)  # (steps, workers, d)
    small = (local**2).sum(-1).mean(-1)
    big = (local.mean(axis=1) ** 2).sum(-1)
    return small, big


def test_estimates_are_exact_on_exact_expectations():
    g2, trace = 3.0, 40.0
    small, big = g2 + trace / 8, g2 + trace / 32
    assert unbiased_estimates(small, big, 8, 32) == pytest.approx((g2, trace))
    with pytest.raises(ValueError, match="B_small < B_big"):
        unbiased_estimates(small, big, 32, 32)


def test_linear_regression_matches_the_closed_form():
    """|G|² = 1, tr Σ = 17, B_noise = 17 (d = 8, σ = 1). Mean per-step estimates within 4 standard
    errors of the truth (each SE ~1 %); the smoothed B_simple within 10 % (≈4 of its SEs, ~2.5 %)."""
    rng = np.random.default_rng(0)
    d, sigma, workers, per_worker, steps = 8, 1.0, 4, 8, 4000
    delta = np.zeros(d)
    delta[0] = 1.0
    true_g2, true_trace = linear_regression_truth(d, delta, sigma)
    small, big = simulate(rng, d, delta, sigma, workers, per_worker, steps)
    per_step = np.array([unbiased_estimates(s, b, per_worker, workers * per_worker) for s, b in zip(small, big)])
    mean, se = per_step.mean(0), per_step.std(0) / math.sqrt(steps)
    assert abs(mean[0] - true_g2) < 4 * se[0]
    assert abs(mean[1] - true_trace) < 4 * se[1]
    noise = NoiseScale(decay=0.999)
    for s, b in zip(small, big):
        noise.update(s, b, per_worker, workers * per_worker)
    assert noise.b_simple == pytest.approx(true_trace / true_g2, rel=0.10)
    # What the two batch sizes remove: |G_small|² alone exceeds |G|² by tr Σ / B_small (here 3.1×).
    assert small.mean() == pytest.approx(true_g2 + true_trace / per_worker, rel=0.05)


def test_one_worker_uses_micro_batches_the_same_way():
    rng = np.random.default_rng(1)
    d, sigma, micro, accum, steps = 4, 2.0, 4, 4, 3000
    delta = np.full(d, 0.5)
    true_g2, true_trace = linear_regression_truth(d, delta, sigma)
    small, big = simulate(rng, d, delta, sigma, accum, micro, steps)  # micro-batches as workers
    noise = NoiseScale(decay=0.999)
    for s, b in zip(small, big):
        noise.update(s, b, micro, micro * accum)  # one worker: micro-batches against their sum
    assert noise.b_simple == pytest.approx(true_trace / true_g2, rel=0.10)


def test_bias_correction_makes_the_first_step_its_own_estimate():
    noise = NoiseScale()
    assert math.isnan(noise.b_simple)
    noise.update(2.0 + 40 / 8, 2.0 + 40 / 32, 8, 32)
    assert noise.record() == pytest.approx({"grad_noise_scale": 20.0, "grad_norm_sq": 2.0, "grad_trace": 40.0})


def test_non_finite_steps_are_skipped_and_state_round_trips():
    noise = NoiseScale(decay=0.9)
    noise.update(5.0, 3.0, 8, 32)
    assert not noise.update(math.inf, 3.0, 8, 32)
    assert noise.steps == 1
    copy = NoiseScale()
    copy.load_state_dict(noise.state_dict())
    assert copy == noise
    noise.reset()
    assert noise.steps == 0 and math.isnan(noise.grad_norm_sq)


def test_negative_smoothed_signal_gives_no_noise_scale():
    noise = NoiseScale()
    noise.update(1.5, 0.2, 8, 32)  # |G|² estimate (32·0.2 − 8·1.5)/24 < 0: noise only so far
    assert noise.grad_norm_sq < 0 and math.isnan(noise.b_simple)


def test_batch_sizes():
    assert batch_sizes(16, 2, 4) == (32, 128)
    assert batch_sizes(16, 4, 1) == (16, 64)
    assert batch_sizes(16, 1, 1) is None


def test_noise_scale_curves_keep_rows_with_a_value_in_training_order():
    records = pd.DataFrame({
        "run": ["a", "a", "a", "b"], "optimizer": ["lamb"] * 4, "step": [20, 10, 30, 10],
        "samples": [640, 320, 960, 320], "grad_noise_scale": [50.0, np.nan, 70.0, 40.0],
    })
    curves = noise_scale_curves(records)
    assert curves["run"].tolist() == ["a", "a", "b"]
    assert curves["step"].tolist() == [20, 30, 10]
    with pytest.raises(UserError, match="grad_noise_scale"):
        noise_scale_curves(records.drop(columns="grad_noise_scale"))
