"""Which device a worker trains on, and the checks that need the device itself.

The rule: a run uses CUDA exactly when `scaling.use_gpu` is true. A Ray Train worker takes the
GPU Ray assigned it (one of its own: NCCL cannot run two ranks on one GPU, see
`config.components.check_gpu_resources`); local mode (`scaling.num_workers: 0`) trains in the
calling process, on its current CUDA device. Where CUDA is asked for and absent, or bf16 is asked
for on a GPU without it, the error names the key before the first step: on the driver where it
sees the device (local mode), and on every worker as it builds.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from scaling_study.errors import ConfigError

if TYPE_CHECKING:
    import torch

    from scaling_study.config import Job


def worker_device(job: "Job", *, local: bool) -> "torch.device":
    """The device a worker of `job` trains on inside Ray Train, local mode included: CUDA exactly
    when `scaling.use_gpu` (ConfigError where there is none). `setup.build_worker` checks
    `train.precision` on it (`check_precision`)."""
    import torch

    if local:
        if job.scaling.use_gpu:
            require_cuda("local mode (scaling.num_workers: 0) trains in this process")
        device = torch.device("cuda", torch.cuda.current_device()) if job.scaling.use_gpu else torch.device("cpu")
    else:
        import ray.train
        import ray.train.torch

        device = ray.train.torch.get_device()
        if job.scaling.use_gpu and device.type != "cuda":
            rank = ray.train.get_context().get_world_rank()
            require_cuda(f"Ray Train gave worker {rank} the device {device}")
    return device


def require_cuda(where: str, source: str | None = None) -> None:
    """Raise ConfigError(`scaling.use_gpu`) unless torch sees a CUDA device in this process."""
    import torch

    if torch.cuda.is_available():
        return
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "a build without CUDA"
    raise ConfigError("scaling.use_gpu", f"true, but torch {torch.__version__} ({build}) sees no CUDA device "
                                         f"here, and {where}; valid: false (train on the CPU), or run where "
                                         "a GPU and a CUDA build of torch are", source)


def check_precision(job: "Job", device: "torch.device", source: str | None = None) -> None:
    """Raise ConfigError(`train.precision`) for bf16 on a GPU without bfloat16 (autocast would
    fail at the first step). fp16 off the GPU is refused when the job loads."""
    import torch

    if job.train.precision != "bf16" or device.type != "cuda":
        return
    with torch.cuda.device(device):
        if torch.cuda.is_bf16_supported():  # autocast's own test
            return
        name, (major, minor) = torch.cuda.get_device_name(), torch.cuda.get_device_capability()
    raise ConfigError("train.precision", f"bf16, but {name} (compute capability {major}.{minor}) has no bfloat16 "
                                         "support (it takes compute capability 8.0 or newer); valid on this GPU: "
                                         "fp16, fp32", source)


def check_local_device(job: "Job", source: str | None = None) -> None:
    """The device checks the driver can make itself: those of local mode, which trains in the
    driver's process (workers are checked as they build: their GPUs may be elsewhere)."""
    if job.scaling.num_workers != 0 or not job.scaling.use_gpu:
        return
    import torch

    require_cuda("local mode (scaling.num_workers: 0) trains in this process", source)
    check_precision(job, torch.device("cuda", torch.cuda.current_device()), source)
