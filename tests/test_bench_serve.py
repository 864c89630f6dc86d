"""`bench serve` at a tiny size (its output's shape, no times asserted) and its synthetic root
as the index reads it."""
import re

import pandas as pd
import pytest

from scaling_study.bench.serve import prepare_root
from scaling_study.cli import main
from scaling_study.errors import UserError
from scaling_study.service.index import Index
from scaling_study.service.roots import parse_roots

FIGURES = ("studies list, cold", "studies list, every study read", "studies list, warm median",
           "studies list, warm p95", "one study, cold", "one study, warm median", "one study, warm p95",
           "push, write -> client, p50", "push, write -> client, p95", "push, write -> client, max")


def test_the_bench_prints_every_figure_against_its_target(tmp_path, capsys):
    args = ["bench", "serve", "--studies", "3", "--trials", "2", "--evals", "3", "--clients", "2",
            "--pushes", "2", "--interval", "0.1", "--repeats", "2", "--root", str(tmp_path / "root")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "3 studies x 2 trials x 3 evaluations (18 rows" in out
    for figure in FIGURES:
        line = next(line for line in out.splitlines() if line.startswith(figure))
        assert re.search(r"\d+ ms|\d+\.\d s", line), line
    judged = [line for line in out.splitlines() if line.endswith("met")]
    assert len(judged) == 7  # list cold, warm x2, study cold, warm x2, push p95
    assert "rows that never arrived: 0 of 4" in out  # both clients got both rows
    assert not (tmp_path / "root").exists()  # no --keep


def test_the_synthetic_root_reads_as_real_sweeps(tmp_path):
    sweeps, reused = prepare_root(tmp_path, studies=3, trials=2, evals=4)
    assert not reused and prepare_root(tmp_path, studies=3, trials=2, evals=4)[1]
    listed = {s["id"]: s for s in Index(parse_roots([str(tmp_path)])).studies()}
    assert set(listed) == {f"0:{s.name}" for s in sweeps}
    running, finished = listed["0:sweep_00000"], listed["0:sweep_00001"]
    assert (running["status"], finished["status"]) == ("running", "finished")
    assert finished["counts"] == {"finished": 2} and finished["workers"] == [1, 2]
    best = max(pd.read_csv(f)["f1"].max() for f in (tmp_path / "sweep_00001" / "trials").glob("*/records.csv"))
    assert finished["metric"]["name"] == "f1" and finished["best"]["value"] == pytest.approx(best)
    with pytest.raises(UserError, match="not empty"):
        prepare_root(tmp_path, studies=4, trials=2, evals=4)
