"""Models from a spec: named sizes from BertConfig, the packaged MiniLM offline, local dirs, errors."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch
from transformers import BertForMaskedLM, BertForQuestionAnswering

from scaling_study.errors import UserError
from scaling_study.models import MODEL_SIZES, build_model, load_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_tiny_is_about_4m_params_with_the_default_vocab(tokenizer):
    model = build_model("tiny", "squad", tokenizer, seed=0)
    assert isinstance(model, BertForQuestionAnswering)
    assert 3.5e6 < n_params(model) < 5e6
    assert model.config.vocab_size == len(tokenizer) == 30522
    assert model.config.hidden_size == MODEL_SIZES["tiny"]["hidden_size"] == 128


def test_seed_fixes_the_weights_without_touching_global_rng(tokenizer):
    state = torch.random.get_rng_state()
    a = build_model("tiny", "mlm", tokenizer, seed=1)
    assert torch.equal(state, torch.random.get_rng_state())
    b = build_model("tiny", "mlm", tokenizer, seed=1)
    c = build_model("tiny", "mlm", tokenizer, seed=2)
    wa, wb, wc = (m.bert.encoder.layer[0].attention.self.query.weight for m in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_mlm_model_trains_on_masked_labels(tokenizer):
    model = build_model("tiny", "mlm", tokenizer, seed=0)
    assert isinstance(model, BertForMaskedLM)
    ids = torch.randint(1000, 2000, (2, 16))
    labels = torch.full_like(ids, -100)
    labels[:, 3] = ids[:, 3]
    out = model(input_ids=ids, masked_positions=torch.tensor([[3, 0], [3, 0]]), labels=labels[:, [3, 0]])
    assert out.logits.shape == (2, 2, 30522) and torch.isfinite(out.loss)  # 2 positions per row
    out.loss.backward()
    assert model.cls.predictions.decoder.weight.grad is not None


def test_default_loads_offline_with_a_fresh_qa_head():
    model = build_model("default", "squad", seed=0)
    assert model.config.hidden_size == 384 and model.config.num_hidden_layers == 6
    assert model.qa_outputs.weight.shape == (2, 384)


def test_local_directory_round_trip(tmp_path, tokenizer):
    model = build_model("tiny", "squad", tokenizer, seed=0)
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    again = build_model(str(tmp_path), "squad", load_tokenizer(str(tmp_path)))
    assert torch.equal(model.qa_outputs.weight, again.qa_outputs.weight)


@pytest.mark.parametrize("spec, message", [
    ("no-such-org/no-such-model", "cannot load the weights of model 'no-such-org/no-such-model'"),
    ("./missing-dir", "model './missing-dir': missing-dir is not a checkpoint directory"),
])
def test_unloadable_specs_name_the_spec_and_the_valid_forms(spec, message):
    with pytest.raises(UserError) as err:
        build_model(spec, "squad")
    assert message in str(err.value)
    assert "valid model specs: 'default'" in str(err.value) and "tiny, mini, small, base, large" in str(err.value)


def test_unknown_task_lists_the_valid_ones(tokenizer):
    with pytest.raises(UserError, match="unknown task 'ner'; valid tasks: squad, mlm"):
        build_model("tiny", "ner", tokenizer)


def test_mlm_head_at_masked_positions_equals_the_full_head(tokenizer):
    from transformers import BertForMaskedLM

    from scaling_study.data.mlm import at_masked_positions, mlm_accuracy

    model = build_model("tiny", "mlm", tokenizer, seed=0).eval()
    full = BertForMaskedLM(model.config).eval()
    full.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 5000, (3, 24), generator=g)
    labels = torch.full_like(ids, -100)
    pick = torch.rand(ids.shape, generator=g) < 0.2
    pick[:, 0] = False  # position 0 ([CLS]) is never masked: the padding points at it
    labels[pick] = ids[pick]
    positions, gathered = at_masked_positions(labels, 10)
    ours = model(input_ids=ids, masked_positions=positions, labels=gathered)
    ref = full(input_ids=ids, labels=labels)
    assert ours.logits.shape == (3, 10, model.config.vocab_size)
    torch.testing.assert_close(ours.loss, ref.loss)
    torch.testing.assert_close(ours.logits[gathered != -100], ref.logits[pick])
    assert mlm_accuracy(ours.logits, gathered) == mlm_accuracy(ref.logits, labels)
    every = model(input_ids=ids, labels=labels)  # per-token labels, no positions: every position
    torch.testing.assert_close(every.loss, ref.loss)
    assert model(input_ids=ids).logits.shape == (3, 24, model.config.vocab_size)  # no labels: every position


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_qa_model_with_a_prebuilt_mask_equals_the_parent(tokenizer, implementation):
    from transformers import BertForQuestionAnswering

    from scaling_study.models.qa_head import PREBUILT_4D_MASKS, attention_mask_4d

    model = build_model("tiny", "squad", tokenizer, seed=0).eval()
    ref = BertForQuestionAnswering(model.config).eval()
    ref.load_state_dict(model.state_dict())
    model.config._attn_implementation = implementation  # shared config: both use it
    ids = torch.randint(1000, 2000, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0  # a padded window
    ours, theirs = model(input_ids=ids, attention_mask=mask), ref(input_ids=ids, attention_mask=mask)
    torch.testing.assert_close(ours.start_logits, theirs.start_logits)
    torch.testing.assert_close(ours.end_logits, theirs.end_logits)
    assert attention_mask_4d(mask, implementation).dim() == (4 if PREBUILT_4D_MASKS else 2)
