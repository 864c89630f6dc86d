"""`bench train`'s rows without Ray: one process, one of the processes without communication,
and 2 processes under DDP over gloo, all taking the product's step (`TrainState.step`) with
gradient accumulation.

Throughput is not asserted (benchmarks print ratios; tests do not time), only that each row
trains the job the bench describes, through the product's step, and returns a rate.
"""
import argparse
import math

import pytest
import yaml
from conftest import tiny_job_data

from scaling_study.bench import train as bench
from scaling_study.errors import UserError


@pytest.fixture()
def args(synth_dir, tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data(synth_dir)))
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    return p.parse_args(["--job", str(path), "--batch", "2", "--seq-len", "64", "--steps", "2",
                         "--warmup", "1", "--grad-accum", "3"])


def test_job_global_batch_counts_accumulation(args):
    for workers in (1, 2):
        phase = bench._job(args, workers).phases()[0]
        assert (phase.per_worker_batch, phase.grad_accum, phase.global_batch) == (2, 3, 2 * workers * 3)


# rank 1 of 2 without DDP: one process of the "no comm." row, on its shard, with no process group
@pytest.mark.parametrize("rank, world, noise_scale", [(0, 1, True), (1, 2, True), (0, 1, False)],
                         ids=["plain", "no-comm", "noise-scale-off"])
def test_plain_row_takes_the_products_step_with_accumulation(args, monkeypatch, rank, world, noise_scale):
    import scaling_study.models as models
    from scaling_study.answers.noise_hooks import MicroBatchNorms
    from scaling_study.train.state import TrainState

    forwards, steps, collectors = [], [], []
    build, step = models.build_model, TrainState.step

    def counting_build(*a, **kw):
        model = build(*a, **kw)
        model.register_forward_hook(lambda *_: forwards.append(1))
        return model

    def counting_step(self, phase, batches):
        steps.append(phase.grad_accum)
        collectors.append(self.noise.collector)
        return step(self, phase, batches)

    monkeypatch.setattr(models, "build_model", counting_build)
    monkeypatch.setattr(TrainState, "step", counting_step)
    rate = bench.plain_throughput(args, bench.data_files(args), rank=rank, world=world, noise_scale=noise_scale)
    assert rate > 0 and math.isfinite(rate)
    assert steps == [3] * (args.warmup + args.steps)
    assert len(forwards) == (args.warmup + args.steps) * args.grad_accum  # 3 micro-batches a step
    # One process accumulating: the product's micro-batch norms, unless the row turns them off.
    assert isinstance(collectors[0], MicroBatchNorms) if noise_scale else collectors[0] is None


def test_compare_noise_scale_follows_each_row_that_measures_it_with_it_off(args, monkeypatch):
    args.compare_noise_scale = True
    monkeypatch.setattr(bench, "plain_throughput", lambda a, f, noise_scale=True: 100.0 if noise_scale else 110.0)
    monkeypatch.setattr(bench, "processes_throughput",
                        lambda a, f, w, ddp, noise_scale=True: 150.0 if ddp and noise_scale else 160.0)
    rows = bench.no_ray_rows(args, files=None)
    ddp = "2 processes, DDP/gloo, no Ray"
    assert [label for label, *_ in rows] == [bench.PLAIN, bench.PLAIN + bench.NOISE_OFF, "2 plain processes, no comm.",
                                            ddp, ddp + bench.NOISE_OFF]
    rounds = [{label: (t, None, None) for label, _, t, _ in rows}]
    assert bench.noise_scale_cost(rounds) == [
        f"noise scale: {bench.PLAIN}: 0.909 x the samples/s without it",
        f"noise scale: {ddp}: 0.938 x the samples/s without it"]
    args.grad_accum = 1  # one process without accumulation measures nothing: no row to compare
    labels = [label for label, *_ in bench.no_ray_rows(args, files=None)]
    assert labels[:2] == [bench.PLAIN, "2 plain processes, no comm."]


def test_ddp_processes_with_accumulation(args):
    rate = bench.processes_throughput(args, bench.data_files(args), 2, ddp=True)
    assert rate > 0 and math.isfinite(rate)


@pytest.mark.parametrize("count, named", [(0, "use --device cpu"), (1, "lower --workers to at most 1")])
def test_cuda_needs_a_gpu_per_process(args, monkeypatch, count, named):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    args.device = "cuda"
    with pytest.raises(UserError, match="--device cuda") as err:
        bench.check_device(args)
    assert named in str(err.value)


def test_cuda_sets_the_ray_rows_use_gpu(args):
    assert not bench._job(args, 2).scaling.use_gpu
    args.device = "cuda"
    assert bench._job(args, 2).scaling.use_gpu


@pytest.mark.parametrize("flag, value", [("--grad-accum", "0"), ("--steps", "-3"), ("--rounds", "x")])
def test_counts_must_be_positive(flag, value, capsys):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    with pytest.raises(SystemExit):
        p.parse_args([flag, value])
    assert f"argument {flag}: expected a whole number >= 1, got {value!r}" in capsys.readouterr().err


def test_compare_ray_quiet_alternates_which_local_ray_goes_first(args, monkeypatch):
    import ray

    from scaling_study import ray_env

    args.compare_ray_quiet, started = True, []
    monkeypatch.setattr(bench, "no_ray_rows", lambda a, f: [("2 processes, DDP/gloo, no Ray", 2, 200.0, bench.PLAIN)])
    monkeypatch.setattr(ray_env, "ensure_ray", lambda address, lean: started.append(lean))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(bench, "ray_throughput", lambda a, w: 90.0 * w if started[-1] else 80.0 * w)
    first, second = bench.one_round(args, None, 0), bench.one_round(args, None, 1)
    assert started == [True, False, False, True]  # a fresh local Ray each, the order swapped
    assert first == second  # the rows keep one order
    assert [(label, t, ref) for label, _, t, ref in first[1:]] == [
        ("Ray Train, 1 worker", 90.0, None), ("Ray Train, 2 workers", 180.0, "Ray Train, 1 worker"),
        ("Ray Train, 2 workers" + bench.RAY_DEFAULTS, 160.0, None)]
    rounds = [{label: (t, None, None) for label, _, t, _ in first}]
    assert bench.ray_quiet_effect(rounds, 2) == [
        "local Ray: Ray Train, 2 workers, Ray's default services: 0.800 x the samples/s of 2 processes, DDP/gloo, no Ray",
        "local Ray: Ray Train, 2 workers: 0.900 x the samples/s of 2 processes, DDP/gloo, no Ray",
        "local Ray: Ray Train, 2 workers on ensure_ray's lean Ray: 1.125 x the samples/s with Ray's default "
        "services (1.000: no effect)"]


def test_without_the_flag_one_local_ray_and_no_comparison(args, monkeypatch):
    import ray

    from scaling_study import ray_env

    started = []
    monkeypatch.setattr(bench, "no_ray_rows", lambda a, f: [])
    monkeypatch.setattr(ray_env, "ensure_ray", lambda address, lean: started.append(lean))
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(bench, "ray_throughput", lambda a, w: 90.0 * w)
    rows = bench.one_round(args, None, 1)
    assert started == [True] and [label for label, *_ in rows] == ["Ray Train, 1 worker", "Ray Train, 2 workers"]
    assert bench.ray_quiet_effect([{label: (t, None, None) for label, _, t, _ in rows}], 2) == []


def test_compare_ray_quiet_refuses_a_cluster(args):
    args.compare_ray_quiet, args.address = True, "10.0.0.1:6379"
    with pytest.raises(UserError, match="--compare-ray-quiet with --address 10.0.0.1:6379: .*leave --address out"):
        bench.main(args)


def test_no_ray_keeps_to_the_rows_without_ray_and_never_starts_ray(args, monkeypatch):
    from scaling_study import ray_env

    args.no_ray = True
    monkeypatch.setattr(bench, "no_ray_rows", lambda a, f: [(bench.PLAIN, 1, 100.0, None)])
    monkeypatch.setattr(ray_env, "ensure_ray", lambda *a, **k: pytest.fail("Ray started"))
    assert bench.one_round(args, None, 0) == [(bench.PLAIN, 1, 100.0, None)]


def test_precision_tokenizer_and_data_dir_reach_the_job(args):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    job = bench._job(p.parse_args(["--job", args.job, "--precision", "bf16", "--tokenizer", "/tok",
                                   "--data-dir", "/data"]), 1)
    assert (job.train.precision, job.model.tokenizer, job.data.dir) == ("bf16", "/tok", "/data")


def test_mfu_is_printed_for_named_sizes_on_a_gpu_with_a_known_peak(args, monkeypatch):
    import torch

    from scaling_study.bench.mfu import train_flops_per_sample

    args.device, args.model, args.precision, args.seq_len = "cuda", "base", "bf16", 128
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    flops = train_flops_per_sample(layers=12, hidden=768, intermediate=3072, seq_len=128)
    assert bench.model_flops_utilization(args, 1000.0) == pytest.approx(1000.0 * flops / 989e12)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "Some Future GPU")
    assert bench.model_flops_utilization(args, 1000.0) is None  # no peak: not guessed
    args.device = "cpu"
    assert bench.model_flops_utilization(args, 1000.0) is None
