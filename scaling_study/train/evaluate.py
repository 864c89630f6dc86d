"""Evaluation on the held-out split, sharded over the data-parallel workers.

Each rank runs the model on its share of the dev features; SQuAD logits are gathered on every
rank (post-processing needs all windows of an example) and scored with the official v1.1
metric; MLM counts are summed with an all-reduce. Every rank returns the same metrics, so a
time-to-target stop is taken by all workers together.
"""
from __future__ import annotations

import contextlib

import torch
import torch.distributed as dist


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _batches(dataset, indices: list[int], batch_size: int, collate=None):
    for start in range(0, len(indices), batch_size):
        items = [dataset[i] for i in indices[start:start + batch_size]]
        yield collate(items) if collate else torch.utils.data.default_collate(items)


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


class SquadEvaluator:
    """F1/EM (official SQuAD v1.1 metric) of a QA model on the dev examples."""

    def __init__(self, examples, tokenizer, *, max_seq_length, doc_stride, max_query_length,
                 n_best_size, max_answer_length, batch_size: int):
        from scaling_study.data import squad

        self.examples = examples
        self.batch_size = batch_size
        self.dataset, self.meta = squad.eval_features(
            examples, tokenizer, max_seq_length=max_seq_length, doc_stride=doc_stride,
            max_query_length=max_query_length)
        self.n_best_size, self.max_answer_length = n_best_size, max_answer_length

    @torch.no_grad()
    def run(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext) -> dict:
        from scaling_study.data import squad
        from scaling_study.data.squad_metric import evaluate_examples

        indices = list(range(rank, len(self.dataset), world))
        starts, ends = [], []
        for batch in _batches(self.dataset, indices, self.batch_size):
            batch = {k: v for k, v in _to(batch, device).items() if k in ("input_ids", "attention_mask", "token_type_ids")}
            with autocast():
                out = model(**batch)
            starts.append(out.start_logits.float().cpu())
            ends.append(out.end_logits.float().cpu())
        mine = (indices, torch.cat(starts) if starts else None, torch.cat(ends) if ends else None)
        shards = [mine]
        if _distributed():
            shards = [None] * dist.get_world_size()
            dist.all_gather_object(shards, mine)
        start_logits, end_logits = _assemble(shards, len(self.dataset))
        preds = squad.postprocess(self.examples, self.meta, start_logits, end_logits,
                                  n_best_size=self.n_best_size, max_answer_length=self.max_answer_length)
        scores = evaluate_examples(self.examples, preds)
        return {"f1": float(scores["f1"]), "em": float(scores["exact_match"])}


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
        self.batches = list(_batches(masked_dataset, list(range(len(masked_dataset))), batch_size))

    @torch.no_grad()
    def run(self, model, device, *, rank: int, world: int, autocast=contextlib.nullcontext) -> dict:
        from scaling_study.data.mlm import mlm_accuracy

        # correct, count, loss sum: on the worker's device, which its collective backend reduces
        totals = torch.zeros(3, dtype=torch.float64, device=device)
        for batch in self.batches[rank::world]:
            batch = _to(batch, device)
            with autocast():
                out = model(**batch)
            correct, count = mlm_accuracy(out.logits, batch["labels"])
            totals[0] += correct
            totals[1] += count
            totals[2] += out.loss.detach().double() * count
        if _distributed():
            dist.all_reduce(totals)
        correct, count, loss = totals.tolist()
        return {"mlm_acc": correct / max(count, 1.0), "eval_loss": loss / max(count, 1.0)}
