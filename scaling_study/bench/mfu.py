"""Model FLOPs utilisation (MFU) of BERT training: the FLOPs a step must do over the GPU's peak.

FLOPs per trained sample of L tokens, for a BERT of n layers, hidden size h and feed-forward size
f (Kaplan et al. 2020 and PaLM's appendix B: 6 FLOPs per matmul weight and token for the forward
and backward passes, plus attention's scores and weighted sums):

    6 · L · n · (4h² + 2hf)  +  12 · n · h · L²

Embedding look-ups and the task heads are left out (BERT-base's QA head is 0.001 % of it). The
peaks are NVIDIA's dense (no sparsity) tensor-core figures per GPU; a GPU not listed has none,
and its MFU is not printed rather than guessed.
"""
from __future__ import annotations

PEAK_TFLOPS: dict[str, dict[str, float]] = {
    # name fragment (as torch.cuda.get_device_name has it) -> precision -> dense TFLOPS;
    # the first fragment found in the name wins, so the specific ones come first
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0},
    "H100 NVL": {"bf16": 835.0, "fp16": 835.0, "tf32": 418.0},
    "H100": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0},  # SXM
    "H200": {"bf16": 989.0, "fp16": 989.0, "tf32": 495.0},
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0},
    "L40S": {"bf16": 362.0, "fp16": 362.0, "tf32": 183.0},
    "L4": {"bf16": 121.0, "fp16": 121.0, "tf32": 60.0},
}


def train_flops_per_sample(*, layers: int, hidden: int, intermediate: int, seq_len: int) -> float:
    """FLOPs of one training sample's forward and backward pass (see the module)."""
    return 6.0 * seq_len * layers * (4 * hidden**2 + 2 * hidden * intermediate) + 12.0 * layers * hidden * seq_len**2


def peak_tflops(device_name: str, precision: str, tf32: bool = True) -> float | None:
    """The GPU's dense peak for `precision` (fp32 counts as TF32 where `tf32`); None if unknown."""
    kind = "tf32" if precision == "fp32" and tf32 else precision
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment in device_name:
            return peaks.get(kind)
    return None


def mfu(samples_per_s: float, flops_per_sample: float, peak: float | None) -> float | None:
    """Achieved FLOP/s over the peak (a fraction), or None without a peak."""
    return samples_per_s * flops_per_sample / (peak * 1e12) if peak else None
