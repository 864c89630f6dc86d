"""Pre-tokenised MLM shards: the blocks of the text they came from, memory-mapped, one rank's
shards per rank; and the offline WordPiece vocabulary that named sizes can use instead of the
packaged one."""
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch

from scaling_study.cli import main
from scaling_study.config import Phase
from scaling_study.data.mlm import text_dataset
from scaling_study.data.tokenize import MANIFEST, ShardedBlocks, write_shards
from scaling_study.errors import UserError
from scaling_study.models import load_tokenizer
from scaling_study.train.tasks import TaskData

LINES = [f"Line {i} says that the harbour of town {i % 7} has {i} boats and a lighthouse." for i in range(400)]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(LINES) + "\n")
    return path


def test_one_shard_holds_the_blocks_of_the_text_as_uint16(corpus, tokenizer, tmp_path):
    manifest = write_shards([corpus], tokenizer, tmp_path, shards=1)
    assert (tmp_path / "shard_00000.u16").stat().st_size % 2 == 0
    shards = text_dataset([manifest], tokenizer, 64)
    assert isinstance(shards, ShardedBlocks)
    text = text_dataset([corpus], tokenizer, 64)
    assert len(shards) == len(text)
    whole = np.fromfile(tmp_path / "shard_00000.u16", dtype=np.uint16)
    three = write_shards([corpus], tokenizer, tmp_path / "three", shards=3).parent
    parts = [np.fromfile(three / f"shard_{i:05d}.u16", dtype=np.uint16) for i in range(3)]
    assert all(p.size for p in parts) and np.array_equal(np.concatenate(parts), whole)  # cut between lines
    for i in (0, 7, len(text) - 1):
        for key in ("input_ids", "special_tokens_mask"):
            assert torch.equal(shards[i][key], text[i][key]), (i, key)


def test_each_rank_reads_only_its_own_shards_and_all_ranks_step_alike(corpus, tokenizer, tmp_path):
    manifest = write_shards([corpus], tokenizer, tmp_path, shards=5)
    blocks = ShardedBlocks(manifest, 32, tokenizer)
    ranks = [blocks.for_rank(r, 2) for r in range(2)]
    assert [r.shard_ids for r in ranks] == [[0, 2, 4], [1, 3]]
    fewest = min(len(ShardedBlocks(manifest, 32, shard_ids=s)) for s in ([0, 2, 4], [1, 3]))
    assert len(ranks[0]) == len(ranks[1]) == fewest
    own = [{tuple(r[i]["input_ids"].tolist()) for i in range(len(r))} for r in ranks]
    data = TaskData({32: blocks}, collate=None, evaluator=None)
    phase = Phase(index=0, steps=1, seq_len=32, per_worker_batch=4, grad_accum=1, global_batch=8, warmup=0, lr=0.1)
    for rank in range(2):
        stream = data.micro_batches(phase, rank=rank, world=2, seed=0, device="cpu")
        rows = [tuple(row.tolist()) for _ in range(3) for row in next(stream).tensors["input_ids"]]
        assert set(rows) <= own[rank] and not set(rows) & own[1 - rank]
    with pytest.raises(UserError, match="5 shard\\(s\\) for 8 workers.*--shards 8"):
        blocks.for_rank(0, 8)


def test_a_manifest_for_another_vocabulary_is_refused(corpus, tokenizer, tmp_path):
    manifest = write_shards([corpus], tokenizer, tmp_path, shards=1)
    other = type("Tok", (), {"__len__": lambda self: 1000})()
    with pytest.raises(UserError, match=f"{MANIFEST}: written with a {len(tokenizer)}-id vocabulary.*1000"):
        ShardedBlocks(manifest, 32, other)


def test_cli_trains_a_wordpiece_vocabulary_and_writes_shards_with_it(corpus, tmp_path, capsys):
    assert main(["data", "tokenize", str(corpus), "--out", str(tmp_path), "--shards", "2",
                 "--wordpiece-vocab", "300"]) == 0
    tok = load_tokenizer(str(tmp_path / "tokenizer"))
    assert len(tok) <= 300 and tok.mask_token_id is not None and tok.cls_token_id is not None
    pair = tok("how many boats?", "the harbour has 12 boats")
    assert pair["input_ids"][0] == tok.cls_token_id and 1 in pair["token_type_ids"]
    blocks = ShardedBlocks(tmp_path / MANIFEST, 32, tok)
    assert int(blocks[0]["input_ids"].max()) < len(tok)
    raw = np.fromfile(tmp_path / "shard_00000.u16", dtype=np.uint16)
    assert raw.size and raw[:5].tolist() == tok(LINES[0], add_special_tokens=False)["input_ids"][:5]
