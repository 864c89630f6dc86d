"""Bootstrap intervals of the tradeoff fit, the held-out check and published steps-to-target tables."""
import math

import numpy as np
import pandas as pd
import pytest

from scaling_study.answers import intervals
from scaling_study.answers.holdout import tradeoff_holdout
from scaling_study.answers.published import points_of, read_steps_table, steps_table_sections
from scaling_study.answers.tradeoff import fit_runs, fit_tradeoff
from scaling_study.errors import UserError

S_MIN, E_MIN = 100.0, 12800.0
BATCHES = (32, 64, 128, 256, 512, 1024)


def runs_on_the_curve(batches=BATCHES, repeats=3, noise=0.05, seed=0, width=0.0):
    """`repeats` runs per batch at S(B) × (1 ± noise), each crossing in (S − width, S]."""
    rng = np.random.default_rng(seed)
    rows = []
    for b in batches:
        for r in range(repeats):
            s = (S_MIN + E_MIN / b) * rng.uniform(1 - noise, 1 + noise)
            rows.append({"optimizer": "lamb", "global_batch": float(b), "run": f"{b}-{r}", "reached": True,
                         "steps_lo": s - width, "steps_hi": s})
    return pd.DataFrame(rows)


def test_exact_points_give_a_point_interval():
    fit = fit_runs(runs_on_the_curve(noise=0.0))
    assert fit.s_min == pytest.approx(S_MIN) and fit.e_min == pytest.approx(E_MIN)
    cols = fit.interval_columns()
    assert cols["s_min_lo"] == pytest.approx(S_MIN) and cols["s_min_hi"] == pytest.approx(S_MIN)
    assert cols["b_crit_lo"] == pytest.approx(128) and cols["b_crit_hi"] == pytest.approx(128)


def test_noisy_runs_give_an_interval_that_holds_the_truth_and_narrows_with_repeats():
    few, many = fit_runs(runs_on_the_curve(repeats=2)), fit_runs(runs_on_the_curve(repeats=12))
    for fit in (few, many):
        cols = fit.interval_columns()
        assert cols["s_min_lo"] <= S_MIN <= cols["s_min_hi"] and cols["e_min_lo"] <= E_MIN <= cols["e_min_hi"]
    width = lambda f: f.interval_columns()["b_crit_hi"] - f.interval_columns()["b_crit_lo"]  # noqa: E731
    assert width(many) < width(few)


def test_evaluation_intervals_widen_the_band_even_with_one_run_per_batch():
    exact = fit_runs(runs_on_the_curve(repeats=1, noise=0.0))
    coarse = fit_runs(runs_on_the_curve(repeats=1, noise=0.0, width=20.0))
    lo, hi = coarse.steps_interval([256.0])
    assert hi[0] - lo[0] > 1.0 and exact.steps_interval([256.0])[1][0] - exact.steps_interval([256.0])[0][0] < 1e-9
    # the point estimate is the fit to the midpoints: 10 steps under the curve
    assert float(coarse.steps(256.0)) == pytest.approx(S_MIN + E_MIN / 256 - 10, rel=1e-6)


def test_bootstrap_is_deterministic_and_interval_drops_nan():
    runs = runs_on_the_curve()
    a = intervals.bootstrap_draws(runs, fit_tradeoff, 50, seed=3)
    b = intervals.bootstrap_draws(runs, fit_tradeoff, 50, seed=3)
    np.testing.assert_array_equal(a, b)
    assert intervals.interval([1.0, np.nan, 3.0, 2.0], level=1.0) == (1.0, 3.0)
    assert intervals.b_crit_of(np.array([[0.0, 5.0], [2.0, 8.0], [0.0, 0.0]]))[:2].tolist() == [math.inf, 4.0]


def test_holdout_predicts_the_largest_batches_from_the_smaller_ones():
    runs = runs_on_the_curve(noise=0.0)
    points = points_of(runs)
    table = tradeoff_holdout(points, runs, ["optimizer"])
    assert table["global_batch"].tolist() == [512.0, 1024.0]  # a third of six held out
    assert table["fit_batches"].iloc[0] == "32,64,128,256"
    np.testing.assert_allclose(table["rel_error"], 0.0, atol=1e-9)
    assert table["within_interval"].all() and (table["kind"] == "held out").all()


def test_holdout_checks_a_censored_batch_against_its_bound():
    runs = runs_on_the_curve(noise=0.0)
    points = points_of(runs).assign(censored_at=np.nan)
    censored = pd.DataFrame([{"optimizer": "lamb", "global_batch": 2048.0, "steps": np.nan, "steps_lo": np.nan,
                              "steps_hi": np.nan, "censored_at": 90.0}])
    table = tradeoff_holdout(pd.concat([points, censored], ignore_index=True), runs, ["optimizer"]).set_index("kind")
    row = table.loc["censored"]
    assert row["predicted_steps"] == pytest.approx(S_MIN + E_MIN / 2048) and bool(row["within_interval"])


def test_a_published_table_of_samples_is_read_and_fitted(tmp_path):
    path = tmp_path / "points.csv"
    runs = runs_on_the_curve(noise=0.02)
    pd.DataFrame({"batch": runs["global_batch"], "samples": runs["steps_hi"] * runs["global_batch"],
                  "run": runs["run"]}).to_csv(path, index=False)
    read = read_steps_table(path)
    assert set(read["optimizer"]) == {"all"} and (read["steps_lo"] == read["steps_hi"]).all()
    tables = steps_table_sections(read)
    fit = tables["tradeoff_fit"].iloc[0]
    assert fit["b_crit_lo"] <= 128 <= fit["b_crit_hi"] and fit["n_boot"] == 1000
    assert set(tables) == {"steps_to_target", "tradeoff_fit", "tradeoff_holdout", "tradeoff_curve"}
    assert (tables["steps_to_target"]["n_runs"] == 3).all()


@pytest.mark.parametrize("text, message", [
    ("size,samples\n8,100\n", "columns size, samples: expected columns batch and samples"),
    ("batch,samples,steps\n8,100,10\n", "exactly one of samples, steps"),
    ("batch,steps\n8,100\n16,-3\n", "row 3, column steps: -3 is not a positive number"),
])
def test_a_published_table_with_a_mistake_names_the_file_and_the_column(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as err:
        read_steps_table(path)
    assert str(path) in str(err.value)


def test_a_published_table_with_many_batches_is_ticked_1_2_5():
    from scaling_study.answers.figures import tradeoff_figure

    many = tuple(2 ** k for k in range(4, 14))  # ten batches
    fig = tradeoff_figure(steps_table_sections(runs_on_the_curve(batches=many, repeats=2)))
    ticks = list(fig.layout.xaxis.tickvals)
    assert ticks != list(many) and all(f"{t:g}"[0] in "125" for t in ticks)
