"""bert_param_groups: every trainable parameter in exactly one group, by name pattern."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from scaling_study.optim import Lamb, bert_param_groups, matches


class TinyBert(nn.Module):
    """Parameter names shaped like Hugging Face BERT's, plus a tied and a frozen weight."""

    def __init__(self):
        super().__init__()
        self.embeddings = nn.ModuleDict({"word": nn.Embedding(10, 4), "LayerNorm": nn.LayerNorm(4)})
        self.dense = nn.Linear(4, 4)
        self.output = nn.ModuleDict({"LayerNorm": nn.LayerNorm(4)})
        self.decoder = nn.Linear(4, 10)
        self.decoder.weight = self.embeddings["word"].weight  # tied: one parameter, two names
        self.frozen = nn.Linear(4, 2)
        self.frozen.requires_grad_(False)


def _ids(group: dict) -> set[int]:
    return {id(p) for p in group["params"]}


def test_default_split_covers_every_trainable_parameter_once():
    model = TinyBert()
    decay, plain = bert_param_groups(model, weight_decay=0.01)
    assert decay["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    names = dict(model.named_parameters())
    assert _ids(decay) == {id(names[n]) for n in ("embeddings.word.weight", "dense.weight")}
    assert _ids(plain) == {id(names[n]) for n in (
        "embeddings.LayerNorm.weight", "embeddings.LayerNorm.bias", "dense.bias",
        "output.LayerNorm.weight", "output.LayerNorm.bias", "decoder.bias")}
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert _ids(decay) | _ids(plain) == trainable and not _ids(decay) & _ids(plain)
    Lamb([decay, plain], lr=0.1)  # torch accepts the groups (it rejects duplicates)


def test_glob_patterns_and_group_options():
    groups = bert_param_groups(TinyBert(), 0.1, no_decay=("*.LayerNorm.*",), lr=0.5)
    assert [len(g["params"]) for g in groups] == [4, 4]
    assert all(g["lr"] == 0.5 for g in groups)


def test_matching_rule():
    assert matches("encoder.layer.0.output.dense.bias", "bias")
    assert matches("encoder.LayerNorm.weight", "LayerNorm.weight")
    assert not matches("encoder.layernorm.weight", "LayerNorm")  # case-sensitive
    assert matches("encoder.layer.3.output.LayerNorm.bias", "encoder.layer.*.LayerNorm.*")
    assert not matches("x.LayerNorm.bias", "LayerNorm.*")  # a glob matches the whole name


def test_pattern_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match="no_decay pattern 'layer_norm' matches no parameter"):
        bert_param_groups(TinyBert(), 0.01, no_decay=("bias", "layer_norm"))
    with pytest.raises(ValueError, match="weight_decay=-1 is invalid"):
        bert_param_groups(TinyBert(), -1)


def test_empty_group_is_dropped():
    model = nn.Linear(3, 3, bias=False)
    model.LayerNorm = nn.LayerNorm(3, bias=False)
    groups = bert_param_groups(model, 0.01, no_decay=("weight",))
    assert len(groups) == 1 and groups[0]["weight_decay"] == 0.0


def test_default_patterns_fit_hugging_face_bert():
    transformers = pytest.importorskip("transformers")
    config = transformers.BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=16)
    with torch.device("meta"):
        model = transformers.BertForPreTraining(config)
    decay, plain = bert_param_groups(model, 0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(n.endswith("weight") and "LayerNorm" not in n for n in map(names.get, _ids(decay)))
    assert all(n.endswith("bias") or "LayerNorm" in n for n in map(names.get, _ids(plain)))
