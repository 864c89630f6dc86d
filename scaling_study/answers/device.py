"""The compute side of a projection on the device projected: a device profile.

A projection adds each GPU's compute time to the interconnect's all-reduce time; both must be of
the same device. Records measured on CPUs give CPU compute, which means nothing next to NVLink.
A device profile gives the compute instead, from one of two places:

- **measured** (`scaling-study bench profile` on the device, a YAML file): training samples/s
  per (model, sequence length), the optimizer step's seconds per model and, where several
  devices were present, the all-reduce bus bandwidth. The file's keys:

      device: NVIDIA H100 80GB HBM3        # what it was measured on
      accelerator: cuda                    # or cpu: a CPU profile is never put next to GPU links
      date: 2026-12-06
      source: scaling-study bench profile --model tiny --seq-len 64 ...
      models:
        - {model: tiny, task: squad, seq_len: 64, batch: 16, precision: bf16, samples_per_s: 51234.0, optimizer_step_s: 0.0011}
      allreduce: {devices: 8, bytes: 268435456, busbw_GBps: 362.0}   # optional

- **named** (`NAMED`): compute per sample = training FLOPs per sample / the device's sustained
  matmul throughput, the optimizer step = the bytes it moves / HBM bandwidth; each with its
  source and date. Training FLOPs per sample = 3 × forward (forward + twice for backward),
  forward = 2·N + 2·L·T·h per token (Kaplan et al. 2020, "Scaling Laws for Neural Language
  Models", arXiv:2001.08361, Table 1; N the non-embedding parameters, L layers, T tokens, h
  hidden). A lower bound on the time: a model far smaller than the device's best matmul shapes
  runs far below that throughput — measure it (`bench profile`) for a number to rely on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from scaling_study.errors import UserError

# Bytes an optimizer step moves per parameter: read fp32 weight, gradient and two moments (16),
# write weight and moments (12) — AdamW and LAMB alike (LAMB's norms re-read, not counted).
OPTIMIZER_BYTES_PER_PARAM = 28
ACCELERATORS = ("cuda", "cpu")
_MAMF = ("stas00/ml-engineering, compute/accelerator/README.md at commit b9e2972, 'Maximum "
         "Achievable Matmul FLOPS comparison table' (BF16, torch {torch}; read 2026-12-06)")
_HBM = ("HBM bandwidth: stas00/ml-engineering compute/accelerator/README.md at commit 0074473, "
        "memory table (NVIDIA spec)")


@dataclass(frozen=True)
class NamedDevice:
    """A device described by its sustained matmul throughput and memory bandwidth (sourced)."""

    name: str
    device: str
    flops: float
    """Sustained dense BF16 matmul FLOP/s (measured maximum, not the datasheet peak)."""
    hbm_bytes_per_s: float
    source: str

    def compute_s_per_sample(self, config: dict, seq_len: int, task: str) -> float:
        return training_flops_per_sample(config, seq_len, task) / self.flops

    def optimizer_s(self, params: int) -> float:
        return params * OPTIMIZER_BYTES_PER_PARAM / self.hbm_bytes_per_s

    def describe(self) -> str:
        return f"device profile {self.name} ({self.device}; derived from FLOPs per sample: {self.source})"

    def label(self) -> str:
        """Short, for a table column."""
        return f"{self.name} (derived from FLOPs)"


NAMED: dict[str, NamedDevice] = {d.name: d for d in (
    NamedDevice("h100-sxm-bf16", "NVIDIA H100 SXM", 794.5e12, 3.35e12,
                f"{_MAMF.format(torch='2.7.0+cu126')}: 794.5 TFLOPS; {_HBM}: 3.35 TB/s"),
    NamedDevice("a100-sxm-bf16", "NVIDIA A100 SXM 80GB", 271.2e12, 2.0e12,
                f"{_MAMF.format(torch='2.6.0+cu126')}: 271.2 TFLOPS; {_HBM}: 2.00 TB/s"),
)}


def training_flops_per_sample(config: dict, seq_len: int, task: str) -> float:
    """3 × (2·N + 2·L·T·h) × T (module docstring); N: the encoder layers' weights, plus the MLM
    decoder (h × vocab) at the ~15 % masked positions, or the QA span head."""
    h, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    n = layers * (4 * h * h + 2 * h * inner)
    head = 0.15 * (h * h + h * config["vocab_size"]) if task == "mlm" else 2 * h
    return 3.0 * seq_len * (2.0 * (n + head) + 2.0 * layers * seq_len * h)


@dataclass(frozen=True)
class MeasuredEntry:
    model: str
    task: str
    seq_len: int
    batch: int
    samples_per_s: float
    optimizer_step_s: float = 0.0


@dataclass(frozen=True)
class MeasuredDevice:
    """A device profile measured by `scaling-study bench profile` (a YAML file)."""

    name: str
    device: str
    date: str
    source: str
    entries: tuple[MeasuredEntry, ...]
    allreduce_busbw: float | None = None
    """Measured all-reduce bus bandwidth (bytes/s) across `allreduce_devices`, if measured."""
    allreduce_devices: int = 0
    accelerator: str = "cuda"
    """cuda or cpu (`ACCELERATORS`): a cpu profile is refused for a projection onto GPU links."""
    path: str = field(default="", compare=False)

    def entry(self, model: str, task: str, seq_len: int) -> MeasuredEntry:
        for e in self.entries:
            if (e.model, e.task, e.seq_len) == (model, task, int(seq_len)):
                return e
        held = ", ".join(f"{e.model}/{e.task}/seq {e.seq_len}" for e in self.entries) or "none"
        raise UserError(f"--device-profile {self.path}: models: no entry for model {model!r}, task {task!r}, "
                        f"seq_len {seq_len} (it holds {held}); measure it: scaling-study bench profile "
                        f"--model {model} --task {task} --seq-len {seq_len} --out {self.path}")

    def describe(self) -> str:
        return f"device profile {self.path} ({self.device}, measured {self.date}: {self.source})"

    def label(self) -> str:
        """Short, for a table column."""
        return f"{self.device} (measured {self.date})"


def load_device_profile(spec: str) -> NamedDevice | MeasuredDevice:
    """A named profile (`NAMED`) or a YAML file written by `bench profile`. UserError naming the
    file, the key and what is valid."""
    if spec in NAMED:
        return NAMED[spec]
    path = Path(spec)
    if not path.is_file():
        raise UserError(f"--device-profile {spec!r}: neither a file nor a named profile (named: "
                        f"{', '.join(NAMED)}); `scaling-study bench profile --out FILE` measures one")
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise UserError(f"--device-profile {path}: not YAML ({exc})") from None
    return measured_from_dict(data, str(path))


def measured_from_dict(data, path: str) -> MeasuredDevice:
    """Check and type a profile file's mapping (module docstring for its keys)."""
    if not isinstance(data, dict):
        raise UserError(f"--device-profile {path}: expected a mapping with device, date, source, models")
    for key in ("device", "accelerator", "date", "source", "models"):
        if key not in data:
            raise UserError(f"--device-profile {path}: missing key {key!r} (keys: device, accelerator, date, "
                            "source, models, optional allreduce)")
    if data["accelerator"] not in ACCELERATORS:
        raise UserError(f"--device-profile {path}: accelerator: {data['accelerator']!r}; valid: {', '.join(ACCELERATORS)}")
    if not isinstance(data["models"], list) or not data["models"]:
        raise UserError(f"--device-profile {path}: models: a non-empty list of {{model, task, seq_len, "
                        "batch, samples_per_s, optimizer_step_s}}")
    entries = tuple(_entry(item, f"{path}: models[{i}]") for i, item in enumerate(data["models"]))
    busbw, devices = None, 0
    if data.get("allreduce") is not None:
        ar = data["allreduce"]
        busbw = _positive(ar.get("busbw_GBps") if isinstance(ar, dict) else None, f"{path}: allreduce.busbw_GBps") * 1e9
        devices = int(_positive(ar.get("devices"), f"{path}: allreduce.devices"))
    return MeasuredDevice(Path(path).stem, str(data["device"]), str(data["date"]), str(data["source"]),
                          entries, busbw, devices, data["accelerator"], path)


def _entry(item, where: str) -> MeasuredEntry:
    if not isinstance(item, dict):
        raise UserError(f"--device-profile {where}: expected a mapping {{model, task, seq_len, batch, samples_per_s}}")
    for key in ("model", "task", "seq_len", "batch", "samples_per_s"):
        if key not in item:
            raise UserError(f"--device-profile {where}: missing key {key!r}")
    return MeasuredEntry(str(item["model"]), str(item["task"]), int(_positive(item["seq_len"], f"{where}.seq_len")),
                         int(_positive(item["batch"], f"{where}.batch")),
                         _positive(item["samples_per_s"], f"{where}.samples_per_s"),
                         _nonnegative(item.get("optimizer_step_s", 0.0), f"{where}.optimizer_step_s"))


def _positive(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"--device-profile {where}: {value!r} is not a positive number")
    return float(value)


def _nonnegative(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"--device-profile {where}: {value!r} is not a number ≥ 0")
    return float(value)
