"""Pre-tokenised MLM corpora: token ids written once as memory-mapped shards, and a WordPiece
vocabulary trained offline.

`scaling-study data tokenize` tokenises text files once into ``shards`` files of uint16 token
ids (2 bytes a token; BERT's vocabularies are far below 65,536 ids) plus ``shards.json``, which
says what they hold. A job reads them with ``data.train: DIR/shards.json``: each rank memory-maps
only its own shards (shard i goes to rank i mod workers), so no rank tokenises the corpus, holds it
as int64, or reads pages another rank trains on. Blocks are cut as `text_dataset` cuts text: lines
joined with [SEP], ``[CLS] t1 .. tn [SEP]`` of exactly ``seq_len`` tokens, within each shard.

`train_wordpiece` writes a tokenizer folder (tokenizer.json) from text with the `tokenizers`
library, for named model sizes where the packaged MiniLM vocabulary is not installed (a GPU
machine without a package registry, say): ``model.tokenizer: DIR``.
"""
from __future__ import annotations

import bisect
import itertools
import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from scaling_study.errors import UserError

MANIFEST = "shards.json"
FORMAT = "scaling_study.mlm_shards/1"
DTYPE = np.uint16
SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


BATCH_LINES = 10_000
"""Lines tokenised per call while writing shards: the corpus is streamed, never held whole."""


def _lines(paths: Sequence[Path]) -> Iterator[str]:
    """The non-empty lines of ``paths``, stripped, in order, read as they are needed."""
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                yield from (line.strip() for line in f if line.strip())
        except OSError as exc:
            raise UserError(f"{path}: cannot read the MLM corpus: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: the MLM corpus must be UTF-8 text: {exc}") from exc


def write_shards(paths: Sequence[Path], tokenizer, out: Path, shards: int) -> Path:
    """Tokenise the non-empty lines of ``paths`` into ``shards`` files of uint16 ids under ``out``
    (consecutive runs of lines, each line followed by [SEP]), streaming: one pass counts the
    lines, the second tokenises them `BATCH_LINES` at a time. Returns the manifest's path."""
    if shards < 1:
        raise UserError(f"--shards {shards}: valid: a whole number >= 1")
    if len(tokenizer) > np.iinfo(DTYPE).max + 1:
        raise UserError(f"the tokenizer has {len(tokenizer)} ids; uint16 shards hold at most 65536")
    total = sum(1 for _ in _lines(paths))
    if total < shards:
        raise UserError(f"{', '.join(map(str, paths))}: {total} non-empty lines for {shards} shards")
    out.mkdir(parents=True, exist_ok=True)
    ends = np.linspace(0, total, shards + 1).round().astype(int)[1:]  # lines up to each shard's end
    names = [f"shard_{i:05d}.u16" for i in range(shards)]
    tokens = [0] * shards
    shard, seen, files = 0, 0, [open(out / name, "wb") for name in names]  # noqa: SIM115 - closed below
    try:
        lines = _lines(paths)
        while batch := list(itertools.islice(lines, BATCH_LINES)):
            parts: dict[int, list[list[int]]] = {}  # shard -> this batch's lines in it
            for ids in tokenizer(batch, add_special_tokens=False)["input_ids"]:
                while seen >= ends[shard]:
                    shard += 1
                parts.setdefault(shard, []).append([*ids, tokenizer.sep_token_id])
                seen += 1
            for i, lines_ids in parts.items():
                flat = np.fromiter(itertools.chain.from_iterable(lines_ids), dtype=DTYPE)
                files[i].write(flat.tobytes())
                tokens[i] += flat.size
    finally:
        for f in files:
            f.close()
    manifest = {"format": FORMAT, "vocab_size": len(tokenizer), "cls_token_id": tokenizer.cls_token_id,
                "sep_token_id": tokenizer.sep_token_id, "special_ids": sorted(tokenizer.all_special_ids),
                "sources": [str(p) for p in paths],
                "shards": [{"file": name, "tokens": n} for name, n in zip(names, tokens)]}
    path = out / MANIFEST
    path.write_text(json.dumps(manifest, indent=1) + "\n")
    return path


def is_manifest(paths) -> bool:
    """Whether ``paths`` (a path or a list of them) names a shards manifest."""
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    return len(paths) == 1 and Path(paths[0]).name == MANIFEST


class ShardedBlocks:
    """``seq_len``-token blocks of the shards in a manifest, read through memory maps: the
    items of `scaling_study.data.mlm.text_dataset` (``input_ids``, ``special_tokens_mask``)."""

    def __init__(self, manifest: Path, seq_len: int, tokenizer=None, shard_ids: Sequence[int] | None = None,
                 limit: int | None = None):
        self.manifest, self.seq_len = Path(manifest), seq_len
        self.meta = _read_manifest(self.manifest, tokenizer)
        self.shard_ids = list(range(len(self.meta["shards"]))) if shard_ids is None else list(shard_ids)
        body = seq_len - 2
        self.maps = [np.memmap(self.manifest.parent / self.meta["shards"][i]["file"], dtype=DTYPE, mode="r")
                     for i in self.shard_ids]
        counts = [m.size // body for m in self.maps]
        self.starts = np.cumsum([0, *counts]).tolist()  # first block of each shard
        self.length = self.starts[-1] if limit is None else min(limit, self.starts[-1])
        if self.length == 0:
            raise UserError(f"{self.manifest}: shards {self.shard_ids} hold fewer tokens than one block of "
                            f"seq_len={seq_len}")
        self.special = np.array(self.meta["special_ids"])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        import torch

        if not 0 <= i < self.length:
            raise IndexError(i)
        shard = bisect.bisect_right(self.starts, i) - 1
        body = self.seq_len - 2
        start = (i - self.starts[shard]) * body
        ids = np.empty(self.seq_len, dtype=np.int64)
        ids[0], ids[-1] = self.meta["cls_token_id"], self.meta["sep_token_id"]
        ids[1:-1] = self.maps[shard][start:start + body]
        return {"input_ids": torch.from_numpy(ids), "special_tokens_mask": torch.from_numpy(
            np.isin(ids, self.special).astype(np.int64))}

    def for_rank(self, rank: int, world: int) -> "ShardedBlocks":
        """Rank ``rank``'s own shards (i mod ``world`` == ``rank``), cut to the blocks every rank
        has, so that all ranks take the same number of steps per epoch."""
        n = len(self.shard_ids)
        if n < world:
            raise UserError(f"{self.manifest}: {n} shard(s) for {world} workers; write at least one per "
                            f"worker (scaling-study data tokenize --shards {world})")
        mine = [self.shard_ids[i] for i in range(rank, n, world)]
        fewest = min(len(ShardedBlocks(self.manifest, self.seq_len, shard_ids=self.shard_ids[r::world]))
                     for r in range(world))
        return ShardedBlocks(self.manifest, self.seq_len, shard_ids=mine, limit=fewest)


def _read_manifest(path: Path, tokenizer) -> dict:
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: cannot read the shards manifest: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{path}: not a shards manifest (format {FORMAT!r}); write one with "
                        "`scaling-study data tokenize`")
    if tokenizer is not None and meta["vocab_size"] != len(tokenizer):
        raise UserError(f"{path}: written with a {meta['vocab_size']}-id vocabulary, the job's tokenizer has "
                        f"{len(tokenizer)}; tokenise again with the job's model.tokenizer / model.name")
    return meta


def train_wordpiece(paths: Sequence[Path], out: Path, vocab_size: int = 8000) -> Path:
    """Train an uncased BERT WordPiece vocabulary on ``paths`` and save it as a tokenizer folder
    that `scaling_study.models.load_tokenizer` (and ``model.tokenizer``) reads."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertTokenizerFast

    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train([str(p) for p in paths], vocab_size=vocab_size, special_tokens=list(SPECIALS),
                    show_progress=False)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=True, model_max_length=512,
                                  unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]", cls_token="[CLS]",
                                  mask_token="[MASK]")
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    return out
