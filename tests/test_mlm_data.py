"""MLM data: token blocks, BERT masking through transformers' collator with a per-sequence cap,
and masked-LM accuracy."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest
import torch

from scaling_study.data.mlm import mlm_accuracy, mlm_collator, premask, text_dataset
from scaling_study.errors import UserError
from scaling_study.models import load_tokenizer

LINES = [f"Line {i} says that the harbour of town {i % 7} has {i} boats and a lighthouse." for i in range(600)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("mlm") / "corpus.txt"
    path.write_text("\n".join(LINES[:300]) + "\n\n" + "\n".join(LINES[300:]) + "\n")
    return path


@pytest.fixture(scope="module")
def blocks(corpus, tokenizer):
    return text_dataset([corpus], tokenizer, seq_len=128)


def test_blocks_are_framed_and_hold_the_text_in_order(blocks, tokenizer):
    ids = blocks.tensors["input_ids"]
    assert ids.shape[1] == 128
    assert (ids[:, 0] == tokenizer.cls_token_id).all() and (ids[:, -1] == tokenizer.sep_token_id).all()
    stream = []
    for line in LINES:
        stream += tokenizer(line, add_special_tokens=False)["input_ids"] + [tokenizer.sep_token_id]
    assert ids[:, 1:-1].flatten().tolist() == stream[:ids.shape[0] * 126]
    special = blocks.tensors["special_tokens_mask"].bool()
    assert torch.equal(special, (ids == tokenizer.cls_token_id) | (ids == tokenizer.sep_token_id))


def test_too_little_text_and_missing_files_are_user_errors(tmp_path, tokenizer):
    (tmp_path / "tiny.txt").write_text("just a few words\n")
    with pytest.raises(UserError, match="tiny.txt: .* fewer than one block of seq_len=128"):
        text_dataset(tmp_path / "tiny.txt", tokenizer, 128)
    with pytest.raises(UserError, match="nope.txt: cannot read"):
        text_dataset([tmp_path / "nope.txt"], tokenizer, 128)


def _batch(blocks, collate, n=64):
    """A collated batch, with its labels spread back over the tokens (-100 where not masked)."""
    batch = collate([blocks[i] for i in range(n)])
    per_token = torch.full_like(batch["input_ids"], -100)
    batch["token_labels"] = per_token.scatter_(1, batch["masked_positions"], batch["labels"])
    return batch


def test_masking_rate_and_labels(blocks, tokenizer):
    torch.manual_seed(0)
    batch = _batch(blocks, mlm_collator(tokenizer, max_predictions=None))
    original = blocks.tensors["input_ids"][:64]
    masked = batch["token_labels"] != -100
    maskable = ~blocks.tensors["special_tokens_mask"][:64].bool()
    rate = masked.sum() / maskable.sum()
    assert 0.13 < rate < 0.17                                    # 15 % (8000 tokens: sd 0.4 %)
    assert not (masked & ~maskable).any()                        # never [CLS]/[SEP]
    assert torch.equal(batch["token_labels"][masked], original[masked])
    assert torch.equal(batch["input_ids"][~masked], original[~masked])
    as_mask_token = (batch["input_ids"][masked] == tokenizer.mask_token_id).float().mean()
    assert 0.74 < as_mask_token < 0.86                           # 80 % [MASK] (sd ~1 %)
    assert "attention_mask" not in batch                        # never padded: no mask to check


def test_a_batch_holds_a_fixed_number_of_masked_positions_per_sequence(blocks, tokenizer):
    """NVIDIA BERT's layout: W = max_predictions positions per row, masked ones first in order,
    then position 0 with label -100; the width does not depend on how many were masked."""
    batch = _batch(blocks, mlm_collator(tokenizer, max_predictions=20, seed=2), n=8)
    positions, labels = batch["masked_positions"], batch["labels"]
    assert positions.shape == labels.shape == (8, 20)
    for row_pos, row_lab, row_tok in zip(positions, labels, batch["token_labels"]):
        n = int((row_lab != -100).sum())
        assert 0 < n and (row_lab[n:] == -100).all() and (row_pos[n:] == 0).all()
        assert row_pos[:n].tolist() == sorted(row_pos[:n].tolist())
        assert row_pos[:n].tolist() == torch.nonzero(row_tok != -100).flatten().tolist()

def test_max_predictions_per_sequence_is_honoured(blocks, tokenizer):
    batch = _batch(blocks, mlm_collator(tokenizer, max_predictions=5, seed=1))
    original = blocks.tensors["input_ids"][:64]
    per_row = (batch["labels"] != -100).sum(dim=1)
    assert batch["labels"].shape == (64, 5)
    assert per_row.max() == 5 and per_row.float().mean() > 4.5   # ~19 drawn, capped at 5
    unmasked = batch["token_labels"] == -100
    assert torch.equal(batch["input_ids"][unmasked], original[unmasked])  # dropped ones restored


def test_seeded_collator_and_premask_are_reproducible(blocks, tokenizer):
    a = _batch(blocks, mlm_collator(tokenizer, seed=3))
    b = _batch(blocks, mlm_collator(tokenizer, seed=3))
    assert torch.equal(a["input_ids"], b["input_ids"]) and torch.equal(a["labels"], b["labels"])
    fixed = premask(blocks, tokenizer, seed=3)
    assert torch.equal(fixed.tensors["labels"], premask(blocks, tokenizer, seed=3).tensors["labels"])
    assert len(fixed) == len(blocks)


def test_mlm_accuracy_counts_only_masked_positions():
    labels = torch.tensor([[-100, 2, 1, -100], [0, -100, -100, 3]])
    predicted = torch.tensor([[2, 2, 0, 1], [0, 1, 1, 3]])      # row 0: 1 of 2 right; row 1: 2 of 2
    logits = torch.nn.functional.one_hot(predicted, num_classes=4).float()
    assert mlm_accuracy(logits, labels) == (3, 4)
    assert mlm_accuracy(logits, torch.full_like(labels, -100)) == (0, 0)
    assert mlm_accuracy(logits[:, :3], labels[:, :3]) == (2, 3)  # a gathered [B, W, V] form
