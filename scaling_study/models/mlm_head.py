"""Masked-LM with the prediction head run only where a token is masked, as NVIDIA's BERT does.

BERT's MLM head ends in a hidden x vocab decoder (30522 columns). `BertForMaskedLM` applies it
at every position and then ignores all but the ~15 % that are masked: at sequence length 128 with
a tiny encoder the decoder is most of a step's work. Gathering the masked positions first gives
the same loss (the mean cross-entropy over masked tokens) for a fraction of the cost.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import BertForMaskedLM
from transformers.modeling_outputs import MaskedLMOutput

IGNORE = -100


class BertForMaskedLMAtMaskedPositions(BertForMaskedLM):
    """`BertForMaskedLM` (same weights, same checkpoints) whose forward with `labels` returns the
    loss and the logits of the masked positions only: `logits[i]` scores the i-th position where
    `labels != -100`, in row-major order. Without labels it is the parent's forward."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
        if labels is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids, **kwargs)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, **kwargs)[0]
        masked = labels != IGNORE
        logits = self.cls(hidden[masked])
        loss = F.cross_entropy(logits.float(), labels[masked])
        return MaskedLMOutput(loss=loss, logits=logits)
