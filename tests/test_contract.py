"""The records contract: one owner of the columns and metrics, read by training, config and reports."""
import math
from types import SimpleNamespace

import pytest

from scaling_study import contract
from scaling_study.config import job_from_dict
from scaling_study.errors import UserError
from scaling_study.results import records as report_records
from scaling_study.results.targets import make_target
from scaling_study.train.gradient_noise import GradientNoise
from scaling_study.train.records import make_row


def _job(task="squad", target=None):
    data = {"name": "c", "task": task, "model": {"name": "tiny"}, "data": {"synth": {"train": 10, "dev": 5}},
            "train": {"steps": 4, "per_worker_batch": 2}, "scaling": {"num_workers": 1}}
    if target:
        data["eval"] = {"every_steps": 2, "target": target}
    return job_from_dict(data)


class _Window:
    def throughput(self):
        return 1.0

    def mean_loss(self):
        return 2.0

    def per_step(self, key):
        return 0.1


def test_a_training_row_has_exactly_the_contract_columns():
    job = _job(target={"metric": "f1", "value": 50})
    phase = job.phases()[0]
    noise = GradientNoise(world=2)
    noise.estimator.update(2.0 + 40 / 8, 2.0 + 40 / 32, 8, 32)  # one step: its own unbiased estimates
    state = SimpleNamespace(position=SimpleNamespace(step=2, samples=4), window=_Window(), lr=1e-3, world=2,
                            clock=SimpleNamespace(train=1.0, wall=lambda: 2.0), device=SimpleNamespace(type="cpu"),
                            noise=noise)
    row = make_row(job, phase, state, {"f1": 40.0, "em": 30.0})
    assert tuple(row) == contract.COLUMN_NAMES
    assert row["f1"] == 40.0 and math.isnan(row["mlm_acc"]) and row["target_metric"] == "f1"
    assert (row["grad_noise_scale"], row["grad_norm_sq"], row["grad_trace"]) == pytest.approx((20.0, 2.0, 40.0))


def test_the_noise_scale_columns_are_the_contracts():
    from scaling_study.answers.noise import NOISE_COLUMNS

    by_name = {c.name: c for c in contract.COLUMNS}
    assert all(by_name[name].dtype == "float" and not by_name[name].config for name in NOISE_COLUMNS)


def test_every_column_has_one_known_type_and_a_meaning():
    for col in contract.COLUMNS + contract.TRIAL_COLUMNS:
        assert col.dtype in {"str", "int", "float", "bool"} and col.meaning
    names = contract.COLUMN_NAMES
    assert len(set(names)) == len(names)
    typed = (set(contract.STRING_COLUMNS) | set(contract.NUMERIC_COLUMNS) | set(contract.BOOL_COLUMNS))
    assert set(names) <= typed
    # The reports read the contract's types, not a copy of them.
    assert report_records.NUMERIC_COLUMNS is contract.NUMERIC_COLUMNS


def test_every_metric_is_a_column_and_every_task_has_its_primary_first():
    for m in contract.METRICS.values():
        assert m.name in contract.COLUMN_NAMES and m.mode in ("max", "min") and m.tasks
    for task in contract.TASKS:
        assert contract.task_metrics(task)[0] == contract.PRIMARY_METRIC[task]
    assert contract.task_metrics("squad") == ("f1", "em", "loss")
    assert contract.task_metrics("mlm") == ("mlm_acc", "eval_loss", "loss")


def test_direction_and_scale_are_read_by_config_and_reports():
    assert contract.METRICS["loss"].reached(0.5, 1.0) and not contract.METRICS["f1"].reached(0.5, 1.0)
    assert make_target("loss", 1.0).mode == "min" and make_target("f1", 80).mode == "max"
    with pytest.raises(UserError, match="fraction 0-1"):
        make_target("mlm_acc", 60)
    with pytest.raises(UserError, match="valid metrics are f1, em, mlm_acc, eval_loss, loss"):
        make_target("accuracy", 1)
    # A target on a metric the task does not produce fails at load time, naming the valid ones.
    with pytest.raises(ValueError, match="eval.target.metric.*valid: f1, em, loss"):
        _job(target={"metric": "mlm_acc", "value": 0.5})
    _job(task="mlm", target={"metric": "eval_loss", "value": 3.0})  # MLM reports eval_loss
