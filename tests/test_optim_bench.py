"""`bench optim`: its arguments, its device check, and one tiny timed run (no time is asserted)."""
from __future__ import annotations

import argparse

import pytest
import torch

from scaling_study import cli
from scaling_study.bench import optim as bench

CUDA = torch.cuda.is_available()


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    bench.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_device_defaults_to_cpu_and_takes_cuda_and_an_index():
    assert _parse().device == "cpu"
    assert _parse("--device", "cuda").device == "cuda"
    assert _parse("--device", "cuda:1").device == "cuda:1"


@pytest.mark.parametrize("device", ["gpu", "cuda:", "cuda:x", "CPU", ""])
def test_a_bad_device_is_refused_by_the_parser(device, capsys):
    with pytest.raises(SystemExit):
        _parse("--device", device)
    assert f"expected cpu, cuda or cuda:N, got {device!r}" in capsys.readouterr().err


@pytest.mark.skipif(CUDA, reason="checks the message where CUDA is absent")
def test_cuda_without_cuda_is_a_clear_error_before_any_work(capsys):
    assert cli.main(["bench", "optim", "--device", "cuda", "--rounds", "1"]) == 2
    err = capsys.readouterr().err
    assert "error: bench optim --device cuda: CUDA is not available here" in err
    assert "use --device cpu" in err


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_a_missing_cuda_index_is_a_clear_error(capsys):
    n = torch.cuda.device_count()
    assert cli.main(["bench", "optim", "--device", f"cuda:{n}"]) == 2
    assert f"there are {n} CUDA devices" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(
    not CUDA, reason="needs a CUDA GPU"))])
def test_run_times_every_step_of_every_optimizer_and_tabulates_ratios(device):
    params = [torch.nn.Parameter(torch.randn(64, 32, device=device)),
              torch.nn.Parameter(torch.randn(32, device=device))]
    for p in params:
        p.grad = torch.randn_like(p)
    specs = ["adamw:foreach", "lamb:foreach", "lars:foreach"]
    timings = bench.run(specs, params, steps=3, warmup=1, rounds=2, device=device)
    assert list(timings) == specs
    for t in timings.values():
        assert len(t.times_ms) == 6 and len(t.round_medians) == 2
        assert all(ms > 0 for ms in t.times_ms)
    rows = bench.table(timings, bound_ms=1.0)
    assert [r["optimizer"] for r in rows] == specs
    assert rows[0]["x_adamw:foreach"].startswith("1.00")
    assert "x_adamw:fused" not in rows[0]  # a baseline that did not run has no column


def test_host_time_and_launches_are_cuda_columns(monkeypatch):
    """On the CPU the host's time is the step and nothing is launched: both columns say '-'."""
    params = [torch.nn.Parameter(torch.randn(16, 8))]
    params[0].grad = torch.randn_like(params[0])
    timings = bench.run(["adamw:foreach", "lamb:foreach"], params, steps=2, warmup=1, rounds=1)
    assert all(t.launches is None and len(t.host_ms) == 2 for t in timings.values())
    rows = bench.table(timings, bound_ms=1.0)
    assert [(r["host_ms"], r["launches"]) for r in rows] == [("-", "-"), ("-", "-")]
    assert bench.count_launches(lambda: None, "cpu") is None


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_on_cuda_a_fused_lamb_step_is_a_few_launches_whatever_the_tensor_count():
    params = [torch.nn.Parameter(torch.randn(8, 8, device="cuda")) for _ in range(50)]
    for p in params:
        p.grad = torch.randn_like(p)
    timings = bench.run(["lamb"], params, steps=2, warmup=1, rounds=1, device="cuda")
    assert timings["lamb"].launches <= 20 and len(timings["lamb"].host_ms) == 2
