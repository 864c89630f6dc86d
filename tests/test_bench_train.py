"""`bench train`'s rows without Ray: the plain loop and DDP over gloo, with gradient accumulation.

Throughput is not asserted (benchmarks print ratios; tests do not time), only that each row
trains the job the bench describes and returns a rate.
"""
import argparse
import math
from pathlib import Path

import pytest
import yaml

from scaling_study.train import bench

QUICKSTART = Path(__file__).resolve().parents[1] / "jobs" / "quickstart.yaml"


@pytest.fixture()
def args(synth_dir, tmp_path):
    with open(QUICKSTART) as f:
        job = yaml.safe_load(f)
    job["data"]["dir"] = str(synth_dir)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return p.parse_args(["--job", str(path), "--batch", "2", "--seq-len", "64", "--steps", "2",
                         "--warmup", "1", "--grad-accum", "3"])


def test_job_global_batch_counts_accumulation(args):
    for workers in (1, 2):
        phase = bench._job(args, workers).phases()[0]
        assert (phase.per_worker_batch, phase.grad_accum, phase.global_batch) == (2, 3, 2 * workers * 3)


def test_plain_loop_with_accumulation(args, monkeypatch):
    import scaling_study.models as models

    forwards = []
    build = models.build_model

    def counting_build(*a, **kw):
        model = build(*a, **kw)
        model.register_forward_hook(lambda *_: forwards.append(1))
        return model

    monkeypatch.setattr(models, "build_model", counting_build)
    rate = bench.plain_throughput(args)
    assert rate > 0 and math.isfinite(rate)
    assert len(forwards) == (args.warmup + args.steps) * args.grad_accum  # 3 micro-batches a step


def test_ddp_processes_with_accumulation(args):
    rate = bench.processes_throughput(args, 2, ddp=True)
    assert rate > 0 and math.isfinite(rate)


@pytest.mark.parametrize("flag, value", [("--grad-accum", "0"), ("--steps", "-3"), ("--rounds", "x")])
def test_counts_must_be_positive(flag, value, capsys):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args([flag, value])
    assert f"argument {flag}: expected a whole number >= 1, got {value!r}" in capsys.readouterr().err
