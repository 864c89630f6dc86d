"""Device profiles: the YAML `bench profile` writes, the named ones derived from FLOPs, their checks."""
import pytest
import yaml

from scaling_study.answers.device import NAMED, load_device_profile, measured_from_dict, training_flops_per_sample
from scaling_study.errors import UserError

GOOD = {"device": "NVIDIA H100 80GB HBM3", "accelerator": "cuda", "date": "2026-12-06", "source": "scaling-study bench profile",
        "models": [{"model": "tiny", "task": "squad", "seq_len": 64, "batch": 16, "samples_per_s": 50000.0,
                    "optimizer_step_s": 0.001}],
        "allreduce": {"devices": 8, "bytes": 268435456, "busbw_GBps": 360.0}}


def test_a_measured_profile_round_trips_through_yaml(tmp_path):
    path = tmp_path / "h100.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    profile = load_device_profile(str(path))
    entry = profile.entry("tiny", "squad", 64)
    assert entry.samples_per_s == 50000.0 and entry.optimizer_step_s == 0.001 and entry.batch == 16
    assert profile.allreduce_busbw == pytest.approx(360e9) and profile.allreduce_devices == 8
    assert "measured 2026-12-06" in profile.label()
    with pytest.raises(UserError, match=r"no entry for model 'base', task 'squad', seq_len 128 \(it holds tiny/squad/seq 64\)"):
        profile.entry("base", "squad", 128)


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("date"), "missing key 'date'"),
    (lambda d: d.update(accelerator="tpu"), "accelerator: 'tpu'; valid: cuda, cpu"),
    (lambda d: d.update(models=[]), "models: a non-empty list"),
    (lambda d: d["models"][0].update(samples_per_s=-1), r"models\[0\].samples_per_s: -1 is not a positive number"),
    (lambda d: d["models"][0].pop("seq_len"), r"models\[0\]: missing key 'seq_len'"),
    (lambda d: d["allreduce"].update(busbw_GBps="fast"), "allreduce.busbw_GBps: 'fast' is not a positive number"),
])
def test_a_profile_with_a_mistake_names_the_file_and_the_key(change, message):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    change(data)
    with pytest.raises(UserError, match=message) as err:
        measured_from_dict(data, "h100.yaml")
    assert "h100.yaml" in str(err.value)


def test_an_unknown_profile_lists_the_named_ones():
    with pytest.raises(UserError, match="named: h100-sxm-bf16, a100-sxm-bf16"):
        load_device_profile("no-such-profile")


def test_named_profiles_derive_compute_from_flops_and_cite_their_source():
    h100 = NAMED["h100-sxm-bf16"]
    config = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "vocab_size": 30522}
    # BERT-large at 512 tokens: 3 × T × (2·(L·12h²) + 2·L·T·h) ≈ 2.4e12 FLOPs per sample.
    flops = training_flops_per_sample(config, 512, "squad")
    assert flops == pytest.approx(3 * 512 * (2 * (24 * 12 * 1024**2 + 2048) + 2 * 24 * 512 * 1024))
    assert h100.compute_s_per_sample(config, 512, "squad") == pytest.approx(flops / 794.5e12)
    assert h100.optimizer_s(335_000_000) == pytest.approx(335e6 * 28 / 3.35e12)
    for profile in NAMED.values():
        assert "commit" in profile.source and "2026-12-06" in profile.source
