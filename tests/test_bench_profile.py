"""`scaling-study bench profile` writes a device profile that `report --device-profile` reads."""
import argparse

import pytest

from scaling_study.answers.checks import profile_for
from scaling_study.answers.device import load_device_profile
from scaling_study.answers.links import parse_cluster
from scaling_study.answers.recommend import Plan
from scaling_study.bench import profile as bench_profile
from scaling_study.errors import UserError
from test_answers_recommend import records


def args(**given):
    parser = argparse.ArgumentParser()
    bench_profile.add_arguments(parser)
    return parser.parse_args([f"--{k.replace('_', '-')}={v}" for k, v in given.items()])


def test_a_cpu_profile_is_written_read_back_and_never_put_next_to_gpu_links(tmp_path, capsys):
    out = tmp_path / "cpu.yaml"
    assert bench_profile.main(args(out=out, device="cpu", model="tiny", seq_len=64, batch=4, steps=2,
                                   warmup=1, rounds=1)) == 0
    assert f"wrote:   {out}" in capsys.readouterr().out
    profile = load_device_profile(str(out))
    entry = profile.entry("tiny", "squad", 64)
    assert entry.samples_per_s > 0 and entry.optimizer_step_s > 0 and profile.accelerator == "cpu"
    plan = Plan(parse_cluster("nvlink4+8xnet400"), 1e6, device=profile)
    with pytest.raises(UserError, match="accelerator: cpu"):
        profile_for(records(), plan, "lamb")


def test_a_profile_that_would_not_read_back_is_not_written(tmp_path):
    out = tmp_path / "bad.yaml"
    with pytest.raises(UserError, match="missing key 'models'"):
        bench_profile.write_profile({"device": "x", "accelerator": "cuda", "date": "d", "source": "s"}, out)
    assert not out.exists()
