"""Evaluation on the held-out split, sharded over the data-parallel workers.

Each rank runs the model on its share of the dev features; SQuAD logits are gathered on every
rank (post-processing needs all windows of an example) and scored with the official v1.1
metric; MLM counts are summed with an all-reduce. Every rank returns the same metrics, so a
time-to-target stop is taken by all workers together.

Nothing waits for the device batch by batch: a rank's batches are collated once (and pinned on a
GPU), its logits and counts stay on its device, and are read once at the end.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _batches(dataset, indices: list[int], batch_size: int) -> list[dict]:
    out = []
    for start in range(0, len(indices), batch_size):
        out.append(torch.utils.data.default_collate([dataset[i] for i in indices[start:start + batch_size]]))
    return out


class _Shards:
    """A rank's collated evaluation batches, built once per (rank, world, device): pinned for a
    GPU, so that their copies do not wait for the host."""

    def __init__(self, make):
        self.make, self.cache = make, {}

    def get(self, rank: int, world: int, device) -> list[dict]:
        device = torch.device(device)
        key = (rank, world, device.type)
        if key not in self.cache:
            batches = self.make(rank, world)
            if device.type == "cuda":
                batches = [{k: v.pin_memory() for k, v in b.items()} for b in batches]
            self.cache = {key: batches}  # one shard at a time: a resized run needs no other
        return self.cache[key]


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class SquadEvaluator:
    """F1/EM (official SQuAD v1.1 metric) of a QA model on the dev examples."""

    INPUTS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, examples, tokenizer, *, max_seq_length, doc_stride, max_query_length,
                 n_best_size, max_answer_length, batch_size: int):
        from scaling_study.data import squad

        self.examples = examples
        self.batch_size = batch_size
        self.dataset, self.meta = squad.eval_features(
            examples, tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
            max_query_length=max_query_length)
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length
        self.shards = _Shards(lambda rank, world: [{k: b[k] for k in self.INPUTS} for b in _batches(
            self.dataset, self._indices(rank, world), batch_size)])

    def _indices(self, rank: int, world: int) -> list[int]:
        return list(range(rank, len(self.dataset), world))

    def run(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext) -> dict:
        from scaling_study.data import squad
        from scaling_study.data.squad_metric import evaluate_examples

        start, end = self.logits(model, device, rank=rank, world=world, autocast=autocast)
        mine = (self._indices(rank, world), None if start is None else start.cpu(), None if end is None else end.cpu())
        shards = [mine]
        if _distributed():
            shards = [None] * dist.get_world_size()
            dist.all_gather_object(shards, mine)
        start_logits, end_logits = _assemble(shards, len(self.dataset))
        preds = squad.postprocess(self.examples, self.meta, start_logits, end_logits,
                                  n_best_size=self.n_best_size, max_answer_length=self.max_answer_length)
        scores = evaluate_examples(self.examples, preds)
        return {"f1": float(scores["f1"]), "em": float(scores["exact_match"])}

    @torch.no_grad()
    def logits(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext):
        """(start, end) logits of this rank's dev features, float32 on `device` (None: it has
        none); nothing is read back to the host."""
        starts, ends = [], []
        for batch in self.shards.get(rank, world, device):
            with autocast():
                out = model(**_to(batch, device))
            starts.append(out.start_logits.float())
            ends.append(out.end_logits.float())
        return (torch.cat(starts), torch.cat(ends)) if starts else (None, None)


def _assemble(shards, n: int):
    width = next(s[1].shape[1] for s in shards if s[1] is not None)
    start = torch.empty(n, width)
    end = torch.empty(n, width)
    for indices, s, e in shards:
        if s is not None:
            start[indices] = s
            end[indices] = e
    return start.numpy(), end.numpy()


class MlmEvaluator:
    """Masked-LM accuracy on a held-out set masked once (`scaling_study.data.mlm.premask`):
    every evaluation of every run scores the same masked positions."""

    def __init__(self, masked_dataset, *, batch_size: int):
        batches = _batches(masked_dataset, list(range(len(masked_dataset))), batch_size)
        self.shards = _Shards(lambda rank, world: batches[rank::world])

    def run(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext) -> dict:
        correct, count, loss = self.totals(model, device, rank=rank, world=world, autocast=autocast).tolist()
        return {"mlm_acc": correct / max(count, 1.0), "eval_loss": loss / max(count, 1.0)}

    @torch.no_grad()
    def totals(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext) -> torch.Tensor:
        """(correct, count, loss x count) summed over every rank's batches: float64 on `device`,
        where the workers' collective backend reduces it; nothing is read back to the host."""
        from scaling_study.data.mlm import mlm_accuracy

        totals = torch.zeros(3, dtype=torch.float64, device=device)
        for batch in self.shards.get(rank, world, device):
            batch = _to(batch, device)
            with autocast():
                out = model(**batch)
            correct, count = mlm_accuracy(out.logits, batch["labels"])
            totals[0] += correct
            totals[1] += count
            totals[2] += out.loss.detach().double() * count
        if _distributed():
            dist.all_reduce(totals)
        return totals
