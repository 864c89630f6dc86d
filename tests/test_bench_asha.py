"""`bench asha`'s verdict over repeated ASHA runs, and its flags (no sweep is run here)."""
import pytest

from scaling_study.cli import main
from scaling_study.bench.asha import verdict

BEST = {"optimizer.lr": 0.03}


def run(worker_s, best=BEST, stopped=0):
    return {"trials": 9, "stopped": stopped, "worker_s": worker_s, "wall_s": 10.0, "metric": 1.17, "best": best}


def test_the_verdict_is_on_the_median_of_the_asha_runs():
    runs = {"grid (FIFO)": run(100.0), "ASHA #1": run(30.0, stopped=8), "ASHA #2": run(44.0, stopped=6),
            "ASHA #3": run(33.0, stopped=7)}
    text = verdict("space.yaml", runs, "loss", "min")
    assert "ASHA #2" in text and "0.440" in text  # every run is shown
    assert text.endswith("in 3 of 3 run(s); median compute 0.33 of the grid's (target <= 0.35): met")
    runs["ASHA #3"] = run(40.0)
    assert verdict("space.yaml", runs, "loss", "min").endswith("median compute 0.40 of the grid's (target <= 0.35): NOT met")


def test_a_run_that_misses_the_grids_best_fails_the_target():
    runs = {"grid (FIFO)": run(100.0), "ASHA": run(20.0, best={"optimizer.lr": 0.003})}
    assert verdict("space.yaml", runs, "loss", "min").endswith(
        "in 0 of 1 run(s); median compute 0.20 of the grid's (target <= 0.35): NOT met")


@pytest.mark.parametrize("value", ["0", "two"])
def test_repeats_must_be_a_count(value, capsys):
    with pytest.raises(SystemExit):
        main(["bench", "asha", "--repeats", value])
    assert f"--repeats: expected a whole number >= 1, got '{value}'" in capsys.readouterr().err
