"""Extractive QA whose padding mask reaches attention ready-made, so no forward waits for the GPU.

Given a 2-D ``attention_mask``, transformers (5.x) asks the device whether it is all ones
(``padding_mask.all()`` in ``masking_utils``) before each forward, to drop an all-ones mask and
let SDPA take its flash kernel: a host sync per micro-batch. SQuAD windows are padded, so the mask
is needed anyway; handing it over as the 4-D mask attention takes (returned as it is) skips the
question. Where transformers has no such path (4.x) or attention takes no 4-D mask (flash
attention), the 2-D mask goes through unchanged.
"""
from __future__ import annotations

import torch
from transformers import BertForQuestionAnswering

try:  # transformers >= 5: a 4-D mask is passed through as it is
    from transformers.masking_utils import create_bidirectional_mask  # noqa: F401
    PREBUILT_4D_MASKS = True
except ImportError:
    PREBUILT_4D_MASKS = False


def attention_mask_4d(mask: torch.Tensor, implementation: str | None) -> torch.Tensor:
    """``mask`` ``[B, L]`` (1: attend) as the ``[B, 1, 1, L]`` mask ``implementation`` takes:
    boolean (True: attend) for SDPA, additive float (0 or the float32 minimum) for eager
    attention; unchanged for any other or where transformers takes no 4-D mask."""
    if not PREBUILT_4D_MASKS or mask.dim() != 2:
        return mask
    if implementation == "sdpa":
        return mask.bool()[:, None, None, :]
    if implementation == "eager":
        blocked = torch.finfo(torch.float32).min
        return torch.zeros(mask.shape, dtype=torch.float32, device=mask.device).masked_fill_(
            mask == 0, blocked)[:, None, None, :]
    return mask


class BertForQuestionAnsweringPrebuiltMask(BertForQuestionAnswering):
    """`BertForQuestionAnswering` (same weights, same checkpoints) that turns a 2-D
    `attention_mask` into the 4-D mask its attention takes (`attention_mask_4d`)."""

    def forward(self, input_ids=None, attention_mask=None, *args, **kwargs):
        if attention_mask is not None:
            attention_mask = attention_mask_4d(attention_mask, self.config._attn_implementation)
        return super().forward(input_ids, attention_mask, *args, **kwargs)
