"""Checks of a loaded job that look beyond the YAML: the optimizer and the schedule are built
once from the job's names and arguments, and a model given as a local folder must be there.

They run on the driver (and in `scaling-study check`) before Ray starts, so that a typo fails in
a second rather than inside the workers. Relative paths are taken from the current directory,
which is why these checks are not part of loading: a sweep's trials load the same job elsewhere.
"""
from __future__ import annotations

from pathlib import Path

from scaling_study.config.job import Job
from scaling_study.errors import ConfigError


def check_components(job: Job, source: str | None = None) -> None:
    """Raise ConfigError naming the key (and `source`, the file) when the model folder is missing,
    the optimizer or schedule cannot be built, or the workers' GPUs cannot work."""
    check_model(job.model.name, source)
    check_gpu_resources(job, source)
    import torch

    from scaling_study.optim import build_optimizer, build_schedule, resolve_optimizer

    o = job.optimizer
    try:
        resolve_optimizer(o.name)
    except ValueError as exc:
        raise ConfigError("optimizer.name", str(exc), source) from None
    probe = [{"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": o.weight_decay}]
    try:
        build_optimizer(o.name, probe, lr=o.lr, **o.args)
    except (TypeError, ValueError) as exc:
        raise ConfigError("optimizer.args", str(exc), source) from None
    for phase in job.phases():
        try:
            build_schedule(job.schedule.name, phase.steps or 1000, warmup=phase.warmup_arg, **job.schedule.args)
        except (TypeError, ValueError) as exc:
            key = "schedule.args" if "keyword" in str(exc) or "argument" in str(exc) else "schedule.warmup"
            raise ConfigError(key, str(exc), source) from None


def check_model(name: str, source: str | None = None) -> None:
    """Raise ConfigError(`model.name`) when `name` is a local path with no checkpoint folder
    (config.json) there; named sizes, 'default' and hub ids pass (a hub id is tried at run time)."""
    from scaling_study.models import DEFAULT_SPEC, MODEL_SIZES, local_path  # torch-free module

    path = local_path(name)
    if path is None or (path / "config.json").is_file():
        return
    what = "is not a folder" if not path.is_dir() else "has no config.json (not a Hugging Face checkpoint)"
    where = "" if path.is_absolute() else f" (relative to {Path.cwd()})"
    raise ConfigError("model.name", f"{name!r} is a local path, and {path}{where} {what}; valid: "
                                    f"{DEFAULT_SPEC!r} (the packaged MiniLM), a size ({', '.join(MODEL_SIZES)}), "
                                    "an existing checkpoint folder, or a hub name such as bert-base-uncased",
                      source)


def check_gpu_resources(job: Job, source: str | None = None) -> None:
    """Raise ConfigError(`scaling.resources_per_worker.GPU`) where Ray would refuse the GPUs asked
    for, or where several workers would share a GPU, which NCCL cannot do (two ranks on one
    device fail at their first collective). A fraction of a GPU for one worker is fine: trials
    of a sweep can share a GPU that way."""
    s = job.scaling
    gpus = s.resources_per_worker.get("GPU")
    key = "scaling.resources_per_worker.GPU"
    if gpus is None:
        return
    if gpus > 0 and not s.use_gpu:
        raise ConfigError(key, f"{gpus:g} GPU per worker, but scaling.use_gpu is false (the workers would train on "
                               "the CPU); set scaling.use_gpu: true, or drop the key", source)
    if s.use_gpu and gpus == 0:
        raise ConfigError(key, "0 with scaling.use_gpu: true; valid: a positive number (1 by default: leave the "
                               "key out), or scaling.use_gpu: false", source)
    if gpus > 1 and gpus != int(gpus):
        raise ConfigError(key, f"{gpus:g}: more than one GPU per worker must be a whole number; valid: a whole "
                               "number, or a fraction below 1 for a single worker", source)
    if 0 < gpus < 1 and s.max_workers > 1:
        raise ConfigError(key, f"{gpus:g} GPU per worker with {s.max_workers} workers would put two ranks on one "
                               "GPU, which NCCL cannot run; valid: 1 (the default) or more, or "
                               "scaling.num_workers: 1", source)
