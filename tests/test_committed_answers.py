"""The committed answers reproduce from the committed inputs with the code as it is."""
from pathlib import Path

import numpy as np
import pandas as pd

from scaling_study.answers.published import read_steps_table, steps_table_sections
from scaling_study.answers.tradeoff import tradeoff_table
from scaling_study.results.records import load_results
from scaling_study.results.targets import make_target

ROOT = Path(__file__).resolve().parents[1] / "reports"
COLUMNS = ["s_min", "s_min_lo", "s_min_hi", "e_min", "e_min_lo", "e_min_hi", "b_crit", "b_crit_lo", "b_crit_hi"]


def test_mlperf_bert_fit_reproduces_from_its_table_and_names_its_source():
    table = ROOT / "mlperf_bert" / "rcps_bert_5.0.0.csv"
    runs = read_steps_table(table)
    assert len(runs) == 263 and runs["global_batch"].nunique() == 13
    fit = steps_table_sections(runs)["tradeoff_fit"]
    committed = pd.read_csv(ROOT / "mlperf_bert" / "tables" / "tradeoff_fit.csv")
    np.testing.assert_allclose(fit[COLUMNS].to_numpy(float), committed[COLUMNS].to_numpy(float), rtol=1e-9)
    source = (ROOT / "mlperf_bert" / "SOURCE.md").read_text(encoding="utf-8")
    assert "mlcommons/logging" in source and "17b4ee5af3397ffe51dcb3ec2187f784f9d1cbbe" in source


def test_critical_batch_fit_reproduces_from_the_committed_records():
    records = load_results(sorted((ROOT / "critical_batch" / "records").glob("*.csv"))).records
    fit = tradeoff_table(records, make_target("f1", 40)).sort_values("optimizer")
    committed = pd.read_csv(ROOT / "critical_batch" / "tables" / "tradeoff_fit.csv").sort_values("optimizer")
    np.testing.assert_allclose(fit[COLUMNS + ["b_noise_at_target"]].to_numpy(float),
                               committed[COLUMNS + ["b_noise_at_target"]].to_numpy(float), rtol=1e-9)
