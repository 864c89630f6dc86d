"""End to end on a real local Ray: TorchTrainer with 2 CPU workers, a tiny BERT, generated data."""
import os
import signal
import time

import pandas as pd
import pytest
import torch

from conftest import tiny_job_data
from scaling_study.contract import COLUMN_NAMES
from scaling_study.config import job_from_dict
from scaling_study.train.driver import RunFailed, run_job

pytestmark = pytest.mark.ray


def tiny_job(tmp_path, synth_dir, **sections):
    sections["output"] = {"dir": str(tmp_path / "runs"), "max_failures": 1, **sections.get("output", {})}
    return job_from_dict(tiny_job_data(synth_dir, **sections))


def model_weights(result):
    from pathlib import Path
    return torch.load(Path(result.checkpoint) / "model.pt", weights_only=True)


def kill_once(step: int, rank: int, marker: str, wait_s: float = 5.0):
    """A `before_step` hook: SIGKILL worker `rank` before step `step + 1` of the first attempt
    (no checkpoint restored), leaving `marker` behind. Defined in a function, it is pickled by
    value to the workers.

    It waits `wait_s` first: Ray Train's controller registers a reported checkpoint when it next
    polls the workers, and a worker dead before that loses the report.
    """
    def hook(state):
        if not state.restored and state.position.step == step and state.rank == rank:
            time.sleep(wait_s)
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return hook


def test_two_workers_train_write_records_and_go_on_from_a_checkpoint_when_a_worker_is_killed(
        tmp_path, synth_dir, local_ray):
    """A 2-worker run whose rank-1 worker is SIGKILLed after step 6 (a checkpoint at step 4):
    Ray Train restarts the group from that checkpoint and every evaluation is recorded once."""
    job = tiny_job(tmp_path, synth_dir, name="killed", train={"steps": 12}, eval={"every_steps": 4})
    killed = tmp_path / "killed"
    result = run_job(job, verbose=False, before_step=kill_once(step=6, rank=1, marker=str(killed)))
    assert killed.is_file(), "the worker was killed"
    rec = pd.read_csv(result.run_dir / "records.csv")
    assert tuple(rec.columns) == COLUMN_NAMES  # the contract, written by a real run
    assert list(rec["step"]) == [4, 8, 12], "each evaluation exactly once, none skipped"
    assert list(rec["samples"]) == [32, 64, 96]
    assert (rec["num_workers"] == 2).all() and (rec["global_batch"] == 8).all()
    assert rec["loss"].iloc[-1] < rec["loss"].iloc[0]
    assert rec["f1"].between(0, 100).all() and rec["em"].between(0, 100).all()
    assert (rec["train_time_s"].diff().dropna() > 0).all(), "the clocks carry over the restart"
    assert (rec["wall_time_s"] >= rec["train_time_s"]).all()
    assert (result.run_dir / "records.parquet").is_file() and (result.run_dir / "job.yaml").is_file()
    # The gradient noise scale, from the DDP hook's norms (the word embedding's all-reduced sparse):
    # both smoothed estimates at every evaluation, and B_simple = tr(Σ)/|G|² once |G|² is positive.
    assert rec[["grad_norm_sq", "grad_trace"]].notna().all().all()
    assert (rec["grad_trace"] > 0).all()
    noise_scale = rec["grad_noise_scale"].dropna()
    assert len(noise_scale) and (noise_scale > 0).all()


def test_two_workers_equal_one_worker_with_the_same_global_batch(tmp_path, synth_dir, local_ray):
    """DDP over 2 x 4 samples, 1 x 4 samples x 2 accumulation steps and 1 x 8 take the same step.

    SGD (a user optimizer by import path) makes the update linear in the gradient, so the weights
    compare the gradients themselves; Adam's first step is ~lr*sign(g) and would amplify rounding.
    No clipping: a clipped step is blind to the gradient's scale (a sum in place of a mean would pass).
    The one-worker references train in local mode (`num_workers: 0`: the same worker function,
    world 1, in this process), which starts no worker group.
    """
    common = dict(model={"dropout": 0.0}, optimizer={"name": "torch.optim:SGD", "lr": 0.5, "weight_decay": 0.0},
                  train={"steps": 2, "max_grad_norm": None}, eval={"every_steps": 2})
    runs = {
        "ddp": dict(scaling={"num_workers": 2}, train={"per_worker_batch": 4, "global_batch": 8}),
        "accum": dict(scaling={"num_workers": 0}, train={"per_worker_batch": 4, "global_batch": 8}),
        "plain": dict(scaling={"num_workers": 0}, train={"per_worker_batch": 8, "global_batch": 8}),
    }
    weights, noise = {}, {}
    for name, sections in runs.items():
        merged = {k: {**common.get(k, {}), **sections.get(k, {})} for k in {*common, *sections}}
        job = tiny_job(tmp_path, synth_dir, name=name, **merged)
        result = run_job(job, verbose=False)
        weights[name] = model_weights(result)
        noise[name] = pd.read_csv(result.run_dir / "records.csv")[["grad_norm_sq", "grad_trace"]].iloc[-1]
    # The noise scale compares 4 samples with 8: across workers under DDP, across micro-batches
    # for one accumulating worker; one worker without accumulation has nothing to compare.
    assert noise["ddp"].notna().all() and noise["accum"].notna().all() and noise["plain"].isna().all()
    for key, ref in weights["plain"].items():
        torch.testing.assert_close(weights["accum"][key], ref, rtol=1e-4, atol=1e-5, msg=f"accum {key}")
        torch.testing.assert_close(weights["ddp"][key], ref, rtol=1e-4, atol=1e-5, msg=f"ddp {key}")


def test_divergence_fails_with_a_clear_message(tmp_path, synth_dir, local_ray):
    job = tiny_job(tmp_path, synth_dir, name="diverge", scaling={"num_workers": 0},
                   optimizer={"name": "adamw", "lr": 1e30}, train={"max_grad_norm": None})
    with pytest.raises(RunFailed, match=r"loss became (nan|inf).*lower optimizer.lr"):
        run_job(job, verbose=False)


def test_time_to_target_stops_the_run(tmp_path, synth_dir, local_ray):
    job = tiny_job(tmp_path, synth_dir, name="target", scaling={"num_workers": 0},
                   eval={"every_steps": 2, "target": {"metric": "loss", "value": 1e9, "stop": True}})
    result = run_job(job, verbose=False)
    rec = pd.read_csv(result.run_dir / "records.csv")
    assert list(rec["step"]) == [2] and bool(rec["target_reached"].iloc[0])


def test_local_mode_evaluates_the_last_step_off_the_schedule_only_with_at_end(tmp_path, synth_dir, local_ray):
    """Local mode (no Ray Train callbacks) writes its records through the same function as the
    controller's callback; `eval.at_end: false` leaves out the evaluation after step 6."""
    steps = {}
    for at_end in (True, False):
        job = tiny_job(tmp_path, synth_dir, name=f"at_end_{at_end}", scaling={"num_workers": 0},
                       train={"steps": 6}, eval={"every_steps": 4, "at_end": at_end})
        result = run_job(job, verbose=False)
        rec = pd.read_csv(result.run_dir / "records.csv")
        assert tuple(rec.columns) == COLUMN_NAMES and result.metrics["finished"]
        steps[at_end] = list(rec["step"])
    assert steps == {True: [4, 6], False: [4]}


def test_two_phase_mlm_pretraining(tmp_path, synth_dir, local_ray):
    """LAMB/NVIDIA-style pretraining in two phases: short sequences, then longer ones with their
    own batch, steps, re-warmup, peak LR and masking cap; masked-LM accuracy on held-out text."""
    job = job_from_dict({
        "name": "mlm", "task": "mlm",
        "model": {"name": "tiny", "max_seq_length": 32},
        "data": {"train": str(synth_dir / "corpus.txt"), "dev": str(synth_dir / "corpus_dev.txt"),
                 "max_predictions": 5, "max_eval_examples": 16},
        "optimizer": {"name": "lamb", "lr": 0.01},
        "schedule": {"name": "poly", "lr_rule": "sqrt", "reference_batch": 16},
        "scaling": {"num_workers": 2},
        "train": {"per_worker_batch": 4, "phases": [
            {"seq_len": 32, "global_batch": 16, "steps": 6, "warmup": 2},
            {"seq_len": 64, "per_worker_batch": 2, "global_batch": 8, "steps": 4, "warmup": 0.75,
             "lr": 0.005, "max_predictions": 10}]},
        "eval": {"every_steps": 2, "target": {"metric": "mlm_acc", "value": 1.0}},
        "output": {"dir": str(tmp_path / "runs"), "max_failures": 0},
    })
    result = run_job(job, verbose=False)
    rec = pd.read_csv(result.run_dir / "records.csv")
    assert list(rec["step"]) == [2, 4, 6, 8, 10]
    assert list(rec["phase"]) == [1, 1, 1, 2, 2] and list(rec["seq_len"]) == [32, 32, 32, 64, 64]
    assert list(rec["global_batch"]) == [16, 16, 16, 8, 8]
    assert list(rec["grad_accum"]) == [2, 2, 2, 2, 2]
    assert list(rec["samples"]) == [32, 64, 96, 112, 128]
    # Phase peak LRs by the square-root rule from reference batch 16: 0.01 and 0.005 x sqrt(8/16).
    assert rec["peak_lr"].tolist() == pytest.approx([0.01] * 3 + [0.005 * 0.5 ** 0.5] * 2)
    assert rec["lr"].iloc[3] < rec["peak_lr"].iloc[3], "phase 2 warms up again"
    assert rec["mlm_acc"].between(0, 1).all() and rec["eval_loss"].notna().all()
    assert rec["f1"].isna().all()
    assert rec["loss"].iloc[2] < rec["loss"].iloc[0], "masked-LM loss falls in phase 1"


def test_local_ray_runs_without_the_preemption_watcher_and_polls_workers_often(local_ray):
    """One local node is never drained: every Ray process of the embedded Ray (trial drivers and
    Train controllers included) sees Ray Train's preemption watcher switched off, and a health
    check interval short enough that frequent evaluations do not wait on it."""
    import os

    from scaling_study.ray_env import HEALTH_CHECK_INTERVAL, PREEMPTION_WATCHER

    @local_ray.remote(num_cpus=0)
    def env():
        return tuple(os.environ.get(k) for k in (PREEMPTION_WATCHER, HEALTH_CHECK_INTERVAL, "TOKENIZERS_PARALLELISM"))

    assert local_ray.get(env.remote()) == ("0", "0.2", "false")
