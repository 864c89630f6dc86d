"""`bench calibrate`: one fine-tuning of a tiny model through the product's build, step and
schedule, printing dev F1 against steps; its flags set the job's keys and errors name them."""
import json

import pytest
import yaml
from conftest import tiny_job_data

from scaling_study.cli import main


@pytest.fixture()
def job_file(synth_dir, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data(synth_dir, schedule={"name": "cosine", "warmup": 0.5})))
    return path


def test_prints_f1_by_step_on_the_jobs_schedule(job_file, capsys):
    from scaling_study.config import load_job
    from scaling_study.optim import build_schedule

    assert main(["bench", "calibrate", "--job", str(job_file), "--steps", "6", "--eval-every", "2",
                 "--batch", "4", "--threads", "1"]) == 0
    header, *lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert header["dev_questions"] == 24 and header["schedule"] == "cosine"  # data.max_eval_examples
    assert [r["step"] for r in lines] == [0, 2, 4, 6]
    assert [r["samples"] for r in lines] == [0, 8, 16, 24]  # one micro-batch of 4 per step
    assert all(0 <= r["em"] <= 100 and 0 <= r["f1"] <= 100 for r in lines)
    assert lines[0]["loss"] is None and lines[-1]["loss"] > 0
    # The job's schedule (cosine, warmup half the steps), not a warmup of the bench's own.
    peak = load_job(job_file).optimizer.lr
    schedule = build_schedule("cosine", 6, warmup=0.5)
    assert [r["lr"] for r in lines] == pytest.approx([peak * schedule(s) for s in (0, 2, 4, 6)])
    assert lines[1]["lr"] == pytest.approx(peak * 2 / 3)


def test_a_flag_that_breaks_the_job_is_named(job_file, capsys):
    assert main(["bench", "calibrate", "--job", str(job_file), "--seq-len", "32"]) == 2
    err = capsys.readouterr().err
    assert f"{job_file} (--seq-len 32)" in err and "model.max_seq_length" in err


def test_only_squad_jobs(job_file, capsys):
    assert main(["bench", "calibrate", "--job", str(job_file), "--set", "task=mlm", "--set", "eval.target=null"]) == 2
    assert "valid: squad" in capsys.readouterr().err
