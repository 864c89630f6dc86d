"""Masked-LM pretraining data: token blocks from plain text, BERT masking, MLM accuracy.

Pretraining runs in phases as LAMB (You et al. 2020) and NVIDIA's BERT recipe do: phase 1 at
sequence length 128, phase 2 at 512, each with its own global batch, steps and warmup. A phase
calls ``text_dataset(paths, tokenizer, seq_len)`` with its length and ``mlm_collator`` with its
``max_predictions`` (BERT's ``max_predictions_per_seq``: 20 at 128, 80 at 512).

Masking is transformers' ``DataCollatorForLanguageModeling`` (15 % of non-special tokens; of
those 80 % [MASK], 10 % random, 10 % kept), capped at ``max_predictions`` masked positions per
sequence as in BERT's ``create_pretraining_data.py``. A batch then takes NVIDIA's BERT layout:
``masked_positions`` and ``labels`` of a fixed width ``max_predictions`` per sequence, padded
with position 0 and label -100, so that the model gathers the same number of positions from every
batch (no boolean indexing, no data-dependent shape, no host sync on a GPU). Blocks are never
padded, so a batch carries no ``attention_mask``: an all-ones mask would only make transformers
check it on the device (a host sync) at every forward.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scaling_study.data.dataset import TensorDictDataset
from scaling_study.errors import UserError

if TYPE_CHECKING:
    import torch

def _as_list(paths) -> list[str | Path]:
    return [paths] if isinstance(paths, (str, Path)) else list(paths)


def _read_lines(paths: list[str | Path]) -> list[str]:
    lines = []
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines += [line.strip() for line in f if line.strip()]
        except OSError as exc:
            raise UserError(f"{path}: cannot read the MLM corpus: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: the MLM corpus must be UTF-8 text: {exc}") from exc
    return lines


def text_dataset(paths: Sequence[str | Path] | str | Path, tokenizer, seq_len: int) -> TensorDictDataset:
    """Token blocks of exactly ``seq_len`` tokens: ``[CLS] t1 .. tn [SEP]``.

    The non-empty lines of all files, in order, are tokenised, joined with ``[SEP]`` between
    lines (documents), and cut into consecutive blocks of ``seq_len - 2`` tokens, as in
    transformers' ``run_mlm.py`` ("group texts"); the last, shorter remainder is dropped so that
    every block has the same length. Items hold ``input_ids`` and ``special_tokens_mask``.
    A shards manifest (``shards.json`` of `scaling-study data tokenize`) gives the same blocks
    from memory-mapped, pre-tokenised shards instead (`scaling_study.data.tokenize`).
    """
    import torch

    from scaling_study.data.tokenize import ShardedBlocks, is_manifest

    if seq_len < 8:
        raise UserError(f"MLM seq_len must be at least 8, got {seq_len}")
    paths = _as_list(paths)
    if is_manifest(paths):
        return ShardedBlocks(Path(paths[0]), seq_len, tokenizer)
    lines = _read_lines(paths)
    ids = tokenizer(lines, add_special_tokens=False)["input_ids"]
    stream: list[int] = []
    for line_ids in ids:
        stream += line_ids + [tokenizer.sep_token_id]
    body = seq_len - 2
    n_blocks = len(stream) // body
    if n_blocks == 0:
        raise UserError(f"{', '.join(map(str, paths))}: {len(stream)} tokens are fewer than one block of seq_len={seq_len}")
    blocks = torch.tensor(stream[:n_blocks * body], dtype=torch.long).view(n_blocks, body)
    cls = torch.full((n_blocks, 1), tokenizer.cls_token_id, dtype=torch.long)
    sep = torch.full((n_blocks, 1), tokenizer.sep_token_id, dtype=torch.long)
    input_ids = torch.cat([cls, blocks, sep], dim=1)
    # Every [CLS]/[SEP], the document breaks inside a block included, is never masked, as in
    # BERT's create_pretraining_data.py.
    special = torch.isin(input_ids, torch.tensor(tokenizer.all_special_ids)).long()
    return TensorDictDataset({"input_ids": input_ids, "special_tokens_mask": special})


def _data_collator_class():
    from transformers import DataCollatorForLanguageModeling

    @dataclass
    class CappedMLMCollator(DataCollatorForLanguageModeling):
        """transformers' MLM collator with at most ``max_predictions`` masked positions per row."""

        max_predictions: int | None = None

        def __call__(self, examples, return_tensors=None):
            batch = super().__call__(examples, return_tensors)
            batch.pop("attention_mask", None)  # all ones: blocks are never padded
            positions, labels = at_masked_positions(batch["labels"], self.max_predictions)
            batch["masked_positions"], batch["labels"] = positions, labels
            return batch

        def torch_mask_tokens(self, inputs, special_tokens_mask=None, offset_mapping=None):
            original = inputs.clone()
            inputs, labels = super().torch_mask_tokens(inputs, special_tokens_mask, offset_mapping)
            if self.max_predictions is not None:
                drop = _excess_predictions(labels != -100, self.max_predictions, self.generator)
                # A dropped position becomes an ordinary, unmasked token again.
                inputs[drop], labels[drop] = original[drop], -100
            return inputs, labels

    return CappedMLMCollator


def _excess_predictions(masked: "torch.Tensor", cap: int, generator=None) -> "torch.Tensor":
    """A bool mask of masked positions to drop so that each row keeps at most ``cap`` of them,
    chosen uniformly at random (the kept ones are a uniform sample of the masked ones)."""
    import torch

    keys = torch.rand(masked.shape, generator=generator)
    keys[~masked] = 2.0  # unmasked positions sort last
    rank = keys.argsort(dim=1).argsort(dim=1)  # each position's rank among its row's keys
    return masked & (rank >= cap)


def at_masked_positions(labels: "torch.Tensor", width: int | None) -> tuple["torch.Tensor", "torch.Tensor"]:
    """``(positions, labels)`` of shape ``[B, width]`` (``width`` None: the sequence length) from
    per-token ``labels`` ``[B, L]`` (-100 where not masked): each row's masked positions in order,
    then position 0 with label -100 (NVIDIA BERT's ``masked_lm_positions`` / ``masked_lm_ids``).
    A row must have at most ``width`` masked positions (the collator caps them)."""
    import torch

    width = labels.shape[1] if width is None else min(width, labels.shape[1])
    masked = labels != -100
    # masked positions first, each group in position order (a stable sort of 0/1 keys)
    order = torch.sort((~masked).to(torch.int8), dim=1, stable=True).indices[:, :width]
    picked = labels.gather(1, order)
    return torch.where(picked != -100, order, 0), picked


def mlm_collator(tokenizer, mlm_probability: float = 0.15, max_predictions: int | None = 20,
                 seed: int | None = None):
    """A batch collator: stacks ``text_dataset`` items and masks them for MLM.

    Returns ``input_ids``, ``masked_positions`` and ``labels`` (see ``at_masked_positions``: the
    original ids at the masked positions, -100 in the padding). ``max_predictions=None`` leaves
    the count uncapped (the width is then the sequence length); ``seed`` gives the
    collator its own generator (the same masks on every run), else the global torch RNG is used.
    """
    if max_predictions is not None and max_predictions < 1:
        raise UserError(f"max_predictions must be a positive integer or None, got {max_predictions}")
    return _data_collator_class()(tokenizer=tokenizer, mlm_probability=mlm_probability,
                                  max_predictions=max_predictions, seed=seed, return_tensors="pt")


def premask(dataset: TensorDictDataset, tokenizer, *, mlm_probability: float = 0.15,
            max_predictions: int | None = 20, seed: int = 0) -> TensorDictDataset:
    """The held-out set masked once with a fixed seed, so every evaluation of every run scores
    the same masked positions (accuracies are then comparable across steps and runs)."""
    collate = mlm_collator(tokenizer, mlm_probability, max_predictions, seed=seed)
    batch = collate([dataset[i] for i in range(len(dataset))])
    return TensorDictDataset(dict(batch))


def mlm_accuracy(logits: "torch.Tensor", labels: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    """(correct, count) over the labelled positions (``labels != -100``): the arg-max prediction
    equals the label. ``logits`` are ``[B, W, V]`` for ``labels`` ``[B, W]``: every position
    (``W`` = L) or the gathered masked positions (``W`` = max_predictions, as the product's MLM
    model scores them). Both are 0-dim int64 tensors on the logits' device, computed without
    waiting for it: sum them over batches and workers, and read them once."""
    masked = labels != -100
    correct = ((logits.argmax(dim=-1) == labels) & masked).sum()
    return correct, masked.sum()
