"""Model FLOPs utilisation: the FLOPs of a BERT training sample and the GPUs' peaks."""
import pytest

from scaling_study.bench.mfu import mfu, peak_tflops, train_flops_per_sample


def test_flops_per_sample_of_bert_base_at_128_tokens():
    # 85 M matmul weights x 6 x 128 tokens, plus attention 12 x 12 layers x 768 x 128²
    matmul = 12 * (4 * 768**2 + 2 * 768 * 3072)
    assert matmul == 84_934_656
    assert train_flops_per_sample(layers=12, hidden=768, intermediate=3072, seq_len=128) == \
        6 * 128 * matmul + 12 * 12 * 768 * 128**2


@pytest.mark.parametrize("name, precision, peak", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989.0), ("NVIDIA H100 PCIe", "bf16", 756.0),
    ("NVIDIA H200", "fp16", 989.0), ("NVIDIA A100-SXM4-80GB", "fp32", 156.0),
    ("NVIDIA GeForce RTX 2080", "bf16", None)])
def test_peaks_by_device_name_and_precision(name, precision, peak):
    assert peak_tflops(name, precision) == peak


def test_strict_fp32_has_no_tensor_core_peak_and_mfu_needs_one():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "fp32", tf32=False) is None
    assert mfu(100.0, 1e12, None) is None
    assert mfu(100.0, 1e12, 200.0) == pytest.approx(0.5)
