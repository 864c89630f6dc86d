"""The GPU rules, checked without a GPU: which device a run trains on, what is refused before
anything starts (and with which key), and how many GPU runs a sweep starts at once."""
import contextlib
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_job_data
from scaling_study.config import job_from_dict
from scaling_study.config.components import check_gpu_resources
from scaling_study.errors import ConfigError
from scaling_study.train import devices
from scaling_study.train.resources import per_worker_resources, run_resources, runs_that_fit

NO_DATA = Path("/nonexistent")  # the rules read no data


def job(**sections):
    return job_from_dict(tiny_job_data(NO_DATA, **sections))


@pytest.fixture()
def fake_gpu(monkeypatch):
    """torch sees one CUDA device (without touching a real one); returns a setter for its bf16."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device", lambda device: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Tesla V100-SXM2-16GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (7, 0))

    def bf16(supported: bool):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **kw: supported)
    bf16(True)
    return bf16


# --- GPU resources: refused when the job is checked, naming the key ---------------------------

@pytest.mark.parametrize("scaling, words", [
    ({"num_workers": 2, "use_gpu": True, "resources_per_worker": {"GPU": 0.5}}, "NCCL cannot run"),
    ({"num_workers": 1, "resources_per_worker": {"GPU": 1}}, "scaling.use_gpu is false"),
    ({"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 0}}, "0 with scaling.use_gpu: true"),
    ({"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 1.5}}, "must be a whole number"),
])
def test_gpu_resources_that_cannot_work_are_refused(scaling, words):
    with pytest.raises(ConfigError, match=words) as err:
        check_gpu_resources(job(scaling=scaling), "job.yaml")
    assert str(err.value).startswith("job.yaml: scaling.resources_per_worker.GPU: ")


@pytest.mark.parametrize("scaling", [
    {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 0.5}},  # sweep trials share a GPU
    {"num_workers": 0, "use_gpu": True, "resources_per_worker": {"GPU": 0.25}},
    {"num_workers": 2, "use_gpu": True, "resources_per_worker": {"GPU": 2}},
    {"num_workers": 2, "use_gpu": True},
    {"num_workers": 2},
])
def test_gpu_resources_that_work_pass(scaling):
    check_gpu_resources(job(scaling=scaling))


def test_scaling_study_check_refuses_shared_gpus_for_every_combination_of_a_space(tmp_path):
    from scaling_study.check import check_space

    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump(tiny_job_data(NO_DATA, scaling={"use_gpu": True, "resources_per_worker": {"GPU": 0.5}},
                                                 data={"train": None, "dev": None, "synth": {},
                                                       "dir": str(tmp_path / "d")},
                                                 output={"dir": str(tmp_path / "runs")})))
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"name": "s", "base": "base.yaml", "output": {"dir": str(tmp_path / "sw")},
                                     "search": {"algorithm": "grid"},
                                     "parameters": {"scaling.num_workers": {"distribution": "grid", "values": [1, 2]}}}))
    # 1 worker on half a GPU is fine; the 2-worker combination (same everything else) is not
    with pytest.raises(ConfigError, match="NCCL cannot run") as err:
        check_space(space)
    assert "scaling.resources_per_worker.GPU" in str(err.value) and "num_workers" in str(err.value)


# --- the device: CUDA exactly when scaling.use_gpu ---------------------------------------------

def test_local_mode_trains_on_the_cpu_without_use_gpu_even_where_cuda_is(fake_gpu):
    assert devices.worker_device(job(scaling={"num_workers": 0}), local=True) == torch.device("cpu")
    assert devices.worker_device(job(scaling={"num_workers": 0, "use_gpu": True}), local=True) == torch.device("cuda", 0)


def test_use_gpu_without_cuda_names_the_key_on_the_driver_and_in_a_worker(monkeypatch, tmp_path):
    from scaling_study.check import check_job

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    local = job(scaling={"num_workers": 0, "use_gpu": True})
    with pytest.raises(ConfigError, match=r"^scaling.use_gpu: true, but torch .* sees no CUDA device"):
        devices.worker_device(local, local=True)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(tiny_job_data(NO_DATA, scaling={"num_workers": 0, "use_gpu": True},
                                                 data={"train": None, "dev": None, "synth": {}, "dir": str(tmp_path / "d")},
                                                 output={"dir": str(tmp_path / "runs")})))
    with pytest.raises(ConfigError, match="valid: false") as err:
        check_job(path)  # `scaling-study check` and `run`, before Ray starts
    assert str(err.value).startswith(f"{path}: scaling.use_gpu: ")
    devices.check_local_device(job(scaling={"num_workers": 2, "use_gpu": True}))  # workers: their GPUs are elsewhere


def test_bf16_on_a_gpu_without_it_is_refused_before_the_model_is_built(fake_gpu, monkeypatch):
    import scaling_study.models as models
    from scaling_study.train.setup import build_worker
    from scaling_study.train.tasks import DataFiles

    fake_gpu(False)
    bf16 = job(scaling={"num_workers": 0, "use_gpu": True}, train={"precision": "bf16"})
    with pytest.raises(ConfigError, match=r"^train.precision: bf16, but Tesla V100.* \(compute capability 7.0\) "
                                          r".*valid on this GPU: fp16, fp32"):
        devices.check_local_device(bf16)
    monkeypatch.setattr(models, "load_tokenizer", lambda *a: pytest.fail("built before the precision was checked"))
    with pytest.raises(ConfigError, match="train.precision"):
        build_worker(bf16, DataFiles([], []), rank=0, world=1, device=torch.device("cuda", 0))
    devices.check_precision(bf16, torch.device("cpu"))  # bf16 autocast on the CPU is fine
    fake_gpu(True)
    devices.check_local_device(bf16)


# --- how many runs fit at once: GPUs count ------------------------------------------------------

def test_a_run_holds_its_workers_resources_with_a_gpu_each_by_default():
    gpu = job(scaling={"num_workers": 2, "use_gpu": True, "cpus_per_worker": 4})
    assert per_worker_resources(gpu) == {"CPU": 4, "GPU": 1}
    assert run_resources(gpu) == {"CPU": 8, "GPU": 2}
    assert run_resources(job(scaling={"num_workers": 0, "use_gpu": True})) == {"CPU": 1, "GPU": 1}
    assert run_resources(job(scaling={"num_workers": 2})) == {"CPU": 2}


@pytest.mark.parametrize("cluster, runs, fit", [
    ({"CPU": 16, "GPU": 2}, [{"CPU": 1, "GPU": 1}], 2),  # the GPUs bound it, not the 16 CPUs
    ({"CPU": 16, "GPU": 8}, [{"CPU": 2, "GPU": 2}, {"CPU": 4, "GPU": 4}], 2),  # the largest run counts
    ({"CPU": 16, "GPU": 1}, [{"CPU": 1, "GPU": 0.5}], 2),  # trials sharing a GPU
    ({"CPU": 4, "GPU": 1}, [{"CPU": 1, "GPU": 0.1}], 4),  # 10 would fit the GPU; 4 the CPUs
    ({"CPU": 1.0, "GPU": 1}, [{"CPU": 0.1}], 10),  # 1.0 / 0.1 = 9.999...
    ({"CPU": 8}, [{"CPU": 2}], 4),  # CPU runs as before
    ({"CPU": 8}, [{"CPU": 1, "GPU": 1}], 1),  # cannot fit at all: at least 1 (check_fits refuses it)
    ({"CPU": 8}, [], 1),
])
def test_runs_that_fit_count_every_resource(cluster, runs, fit):
    assert runs_that_fit(cluster, runs) == fit


def test_nccl_env_and_tf32_apply_to_gpu_workers_only(monkeypatch, tmp_path):
    import os

    import torch

    from scaling_study.config import load_job
    from scaling_study.train.setup import apply_nccl_env, set_matmul_precision

    path = tmp_path / "job.yaml"
    path.write_text("name: g\ndata: {synth: {}}\ntrain: {steps: 2}\n")
    job = load_job(path, ["scaling.nccl_env={NCCL_SOCKET_IFNAME: ib0, NCCL_DEBUG: INFO}"])
    environ = {}
    monkeypatch.setattr(os, "environ", environ)
    apply_nccl_env(job, torch.device("cpu"))
    assert environ == {}
    apply_nccl_env(job, torch.device("cuda", 0))
    assert environ == {"NCCL_SOCKET_IFNAME": "ib0", "NCCL_DEBUG": "INFO"}
    set_to = []
    monkeypatch.setattr(torch, "set_float32_matmul_precision", set_to.append)
    set_matmul_precision(job, torch.device("cpu"))
    set_matmul_precision(job, torch.device("cuda", 0))
    set_matmul_precision(load_job(path, ["train.tf32=false"]), torch.device("cuda", 0))
    assert set_to == ["high", "highest"]


def test_the_process_group_timeout_reaches_ray_trains_torch_config(tmp_path):
    from scaling_study.config import load_job
    from scaling_study.train.driver import build_trainer
    from scaling_study.train.tasks import DataFiles

    path = tmp_path / "job.yaml"
    path.write_text(f"name: g\ndata: {{synth: {{}}}}\ntrain: {{steps: 2}}\noutput: {{dir: {tmp_path}}}\n")
    trainer = build_trainer(load_job(path, ["scaling.process_group_timeout_s=77"]),
                            DataFiles([tmp_path / "t"], [tmp_path / "d"]))
    assert trainer.backend_config.timeout_s == 77
