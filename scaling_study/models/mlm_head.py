"""Masked-LM with the prediction head run only at the masked positions, as NVIDIA's BERT does.

BERT's MLM head ends in a hidden x vocab decoder (30522 columns). `BertForMaskedLM` applies it
at every position and then ignores all but the ~15 % that are masked: at sequence length 128 with
a tiny encoder the decoder is most of a step's work. NVIDIA's BERT gathers a fixed number of
positions per sequence (`max_predictions_per_seq`, padded, the padding ignored by the loss)
before the head: the same loss for a fraction of the cost, and shapes that do not depend on the
data, so nothing waits for the GPU (a boolean index would read the mask's count back: two host
syncs per micro-batch, and a new shape each time).
"""
from __future__ import annotations

import torch.nn.functional as F
from transformers import BertForMaskedLM
from transformers.modeling_outputs import MaskedLMOutput

IGNORE = -100


class BertForMaskedLMAtMaskedPositions(BertForMaskedLM):
    """`BertForMaskedLM` (same weights, same checkpoints) whose forward with `masked_positions`
    (``[B, W]``, from `scaling_study.data.mlm.at_masked_positions`) and `labels` (``[B, W]``, -100
    in the padding) scores those positions only: `logits` is ``[B, W, vocab]`` and the loss is the
    mean cross-entropy over the labelled ones. With per-token `labels` (``[B, L]``) and no
    positions it scores every position, as the parent does; without labels it is the parent's
    forward."""

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None,
                masked_positions=None, **kwargs):
        if labels is None:
            return super().forward(input_ids=input_ids, attention_mask=attention_mask,
                                   token_type_ids=token_type_ids, **kwargs)
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids, **kwargs)[0]
        if masked_positions is not None:
            index = masked_positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1])
            hidden = hidden.gather(1, index)
        logits = self.cls(hidden)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=IGNORE)
        return MaskedLMOutput(loss=loss, logits=logits)
