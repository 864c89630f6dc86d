"""SQuAD v1.1: the published JSON read as it is, features for BERT, and n-best post-processing.

Features follow the BERT reference (``run_squad.py``) through the fast tokenizer's own
mechanisms: the question is cut to ``max_query_length`` tokens, the context is split into
windows of ``max_seq_length`` tokens overlapping by ``doc_stride`` (``return_overflowing_tokens``
+ ``stride`` with ``truncation="only_second"``), and answer spans map to tokens through
``offset_mapping``. Every feature is padded to ``max_seq_length`` so that batches have one shape
(throughput comparisons across runs then measure the same work per sample).

``doc_stride`` is transformers' meaning: the number of context tokens two consecutive windows
share. (BERT's ``run_squad.py`` used the same name for the step between window starts; with
384/128 the two give similar windows, but they are not the same setting.)
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scaling_study.data.dataset import TensorDictDataset
from scaling_study.errors import UserError

if TYPE_CHECKING:
    import torch

__all__ = ["SquadExample", "EvalMeta", "TensorDictDataset", "read_squad", "examples_to_json",
           "train_features", "eval_features", "postprocess"]


@dataclass(frozen=True)
class SquadExample:
    """One question about one context. ``answers`` are (text, character start) pairs; dev
    questions carry several gold answers, train questions one."""

    qid: str
    title: str
    context: str
    question: str
    answers: list[tuple[str, int]] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------
# Reading


def _expect(value: Any, kind: type | tuple[type, ...], path: str, where: str, what: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool):
        raise UserError(f"{where}: {path}: expected {what}, got {type(value).__name__}")
    return value


def _get(obj: dict, key: str, kind, path: str, where: str, what: str) -> Any:
    if key not in obj:
        raise UserError(f"{where}: {path}: missing key '{key}' ({what})")
    return _expect(obj[key], kind, f"{path}.{key}", where, what)


def _read_answers(qa: dict, context: str, path: str, where: str) -> list[tuple[str, int]]:
    answers = _get(qa, "answers", list, path, where, "a list of {text, answer_start}")
    if not answers:
        hint = " (SQuAD v2.0 unanswerable questions are not supported)" if qa.get("is_impossible") else ""
        raise UserError(f"{where}: {path}.answers: empty; SQuAD v1.1 questions have at least one answer{hint}")
    out = []
    for i, ans in enumerate(answers):
        apath = f"{path}.answers[{i}]"
        _expect(ans, dict, apath, where, "an object {text, answer_start}")
        text = _get(ans, "text", str, apath, where, "the answer text")
        start = _get(ans, "answer_start", int, apath, where, "a character offset into the context")
        if not 0 <= start <= len(context) - len(text) or context[start:start + len(text)] != text:
            found = context[max(start, 0):max(start, 0) + len(text)]
            raise UserError(f"{where}: {apath}.answer_start: context[{start}:{start + len(text)}] is "
                            f"{found!r}, not the answer text {text!r}")
        out.append((text, start))
    return out


def read_squad(path: str | Path) -> list[SquadExample]:
    """All questions of a SQuAD v1.1 JSON file, in file order.

    Raises UserError naming the file and the JSON path (``data[3].paragraphs[0].qas[2]...``) of
    the first thing that is missing, mistyped, duplicated or inconsistent (an ``answer_start``
    that does not point at its answer text).
    """
    where = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except OSError as exc:
        raise UserError(f"{where}: cannot read: {exc.strerror or exc}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{where}: not valid JSON: {exc}") from exc
    _expect(doc, dict, "$", where, "an object with 'version' and 'data'")
    examples, seen = [], {}
    for a, article in enumerate(_get(doc, "data", list, "$", where, "a list of articles")):
        apath = f"data[{a}]"
        _expect(article, dict, apath, where, "an article {title, paragraphs}")
        title = article.get("title", "")
        for p, para in enumerate(_get(article, "paragraphs", list, apath, where, "a list of paragraphs")):
            ppath = f"{apath}.paragraphs[{p}]"
            _expect(para, dict, ppath, where, "a paragraph {context, qas}")
            context = _get(para, "context", str, ppath, where, "the context text")
            for q, qa in enumerate(_get(para, "qas", list, ppath, where, "a list of questions")):
                qpath = f"{ppath}.qas[{q}]"
                _expect(qa, dict, qpath, where, "a question {id, question, answers}")
                qid = _get(qa, "id", str, qpath, where, "a unique question id")
                if qid in seen:
                    raise UserError(f"{where}: {qpath}.id: '{qid}' already used at {seen[qid]}")
                seen[qid] = qpath
                question = _get(qa, "question", str, qpath, where, "the question text")
                answers = _read_answers(qa, context, qpath, where)
                examples.append(SquadExample(qid, str(title), context, question, answers))
    if not examples:
        raise UserError(f"{where}: $.data: no questions found")
    return examples


def examples_to_json(examples: Sequence[SquadExample], version: str = "1.1") -> dict:
    """The SQuAD JSON document for ``examples`` (consecutive questions on one context share a
    paragraph; consecutive paragraphs with one title share an article)."""
    data: list[dict] = []
    for ex in examples:
        if not data or data[-1]["title"] != ex.title:
            data.append({"title": ex.title, "paragraphs": []})
        paragraphs = data[-1]["paragraphs"]
        if not paragraphs or paragraphs[-1]["context"] != ex.context:
            paragraphs.append({"context": ex.context, "qas": []})
        paragraphs[-1]["qas"].append({
            "id": ex.qid, "question": ex.question,
            "answers": [{"text": t, "answer_start": s} for t, s in ex.answers]})
    return {"version": version, "data": data}


# ---------------------------------------------------------------------------------------------
# Features


def _truncate_questions(questions: list[str], tokenizer, max_query_length: int) -> list[str]:
    # BERT's reference keeps the first max_query_length question tokens; cutting the string at
    # the last kept token's end offset lets the tokenizer re-tokenise exactly those tokens.
    enc = tokenizer(questions, add_special_tokens=False, return_offsets_mapping=True)
    return [q if len(offs) <= max_query_length else q[:offs[max_query_length - 1][1]]
            for q, offs in zip(questions, enc["offset_mapping"])]


def _encode(examples: Sequence[SquadExample], tokenizer, max_seq_length: int, doc_stride: int,
            max_query_length: int):
    if not examples:
        raise UserError("no SQuAD examples to featurise")
    if tokenizer.padding_side != "right":
        raise UserError("SQuAD features need a tokenizer that pads on the right")
    questions = _truncate_questions([ex.question.lstrip() for ex in examples], tokenizer, max_query_length)
    # The window must leave room for the question, [CLS] and two [SEP]s plus at least one context
    # token more than the stride, or the windows would never advance through the context.
    needed = max_query_length + 3 + doc_stride + 1
    if max_seq_length < needed:
        raise UserError(f"max_seq_length={max_seq_length} is too short for max_query_length="
                        f"{max_query_length} and doc_stride={doc_stride}: it must be at least {needed}")
    return tokenizer(questions, [ex.context for ex in examples], truncation="only_second",
                     max_length=max_seq_length, stride=doc_stride, return_overflowing_tokens=True,
                     return_offsets_mapping=True, padding="max_length", return_token_type_ids=True)


def _answer_tokens(offsets: list, seq_ids: list, start_char: int, end_char: int) -> tuple[int, int]:
    """Token span of characters [start_char, end_char) inside this window's context, or (0, 0)
    (the [CLS] token) when the window does not hold the whole answer, as in BERT's reference."""
    import numpy as np

    ctx = [i for i, s in enumerate(seq_ids) if s == 1]
    starts = np.array([offsets[i][0] for i in ctx])
    ends = np.array([offsets[i][1] for i in ctx])
    if start_char < starts[0] or end_char > ends[-1]:
        return 0, 0
    # The last token that starts at or before the answer, the first that ends at or after it.
    first = int(np.searchsorted(starts, start_char, side="right")) - 1
    last = int(np.searchsorted(ends, end_char, side="left"))
    return ctx[first], ctx[last]


def _tensor_fields(enc) -> dict[str, "torch.Tensor"]:
    import torch

    return {k: torch.tensor(enc[k], dtype=torch.long)
            for k in ("input_ids", "attention_mask", "token_type_ids")}


def train_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384,
                   doc_stride: int = 128, max_query_length: int = 64) -> TensorDictDataset:
    """Training features: one per context window, with the first answer's token span as
    ``start_positions``/``end_positions`` (0, the [CLS] token, when the window misses it)."""
    import torch

    enc = _encode(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    spans = []
    for i, ex_index in enumerate(enc["overflow_to_sample_mapping"]):
        text, start = examples[ex_index].answers[0]
        spans.append(_answer_tokens(enc["offset_mapping"][i], enc.sequence_ids(i), start, start + len(text)))
    fields = _tensor_fields(enc)
    fields["start_positions"] = torch.tensor([s for s, _ in spans], dtype=torch.long)
    fields["end_positions"] = torch.tensor([e for _, e in spans], dtype=torch.long)
    return TensorDictDataset(fields)


@dataclass(frozen=True)
class EvalMeta:
    """What post-processing needs per evaluation feature: the example it came from, each token's
    character span in that example's context, and which tokens belong to the context."""

    example_index: "torch.Tensor"  # [F] long
    offsets: "torch.Tensor"        # [F, L, 2] int32, character [start, end) in the context
    context_mask: "torch.Tensor"   # [F, L] bool, True for tokens of the context

    def __len__(self) -> int:
        return len(self.example_index)


def eval_features(examples: Sequence[SquadExample], tokenizer, max_seq_length: int = 384,
                  doc_stride: int = 128, max_query_length: int = 64) -> tuple[TensorDictDataset, EvalMeta]:
    """Evaluation features (input tensors only) and the ``EvalMeta`` to map logits back to text."""
    import torch

    enc = _encode(examples, tokenizer, max_seq_length, doc_stride, max_query_length)
    n = len(enc["input_ids"])
    context_mask = torch.tensor([[s == 1 for s in enc.sequence_ids(i)] for i in range(n)], dtype=torch.bool)
    meta = EvalMeta(example_index=torch.tensor(enc["overflow_to_sample_mapping"], dtype=torch.long),
                    offsets=torch.tensor(enc["offset_mapping"], dtype=torch.int32),
                    context_mask=context_mask)
    return TensorDictDataset(_tensor_fields(enc)), meta


# ---------------------------------------------------------------------------------------------
# Post-processing


def _best_spans(start_logits, end_logits, context_mask, n_best_size: int, max_answer_length: int):
    """Per feature, the best valid (start, end) among the n_best start and n_best end tokens:
    both in the context, start <= end, at most max_answer_length tokens. Returns
    (score [F], start [F], end [F]); score is -inf where no span is valid."""
    import torch

    neg_inf = torch.tensor(float("-inf"))
    start = torch.where(context_mask, start_logits.float(), neg_inf)
    end = torch.where(context_mask, end_logits.float(), neg_inf)
    k = min(n_best_size, start.shape[1])
    s_val, s_idx = start.topk(k, dim=1)
    e_val, e_idx = end.topk(k, dim=1)
    length = e_idx[:, None, :] - s_idx[:, :, None] + 1          # [F, k, k]
    score = s_val[:, :, None] + e_val[:, None, :]
    valid = (length >= 1) & (length <= max_answer_length) & torch.isfinite(score)
    score = torch.where(valid, score, neg_inf).flatten(1)
    best, flat = score.max(dim=1)
    return best, s_idx.gather(1, (flat // k)[:, None])[:, 0], e_idx.gather(1, (flat % k)[:, None])[:, 0]


def postprocess(examples: Sequence[SquadExample], meta: EvalMeta, start_logits, end_logits,
                n_best_size: int = 20, max_answer_length: int = 30) -> dict[str, str]:
    """Predicted answer text per question id: the highest-scoring (start + end logit) valid span
    over all of a question's windows, cut from its context by character offsets. A question
    with no valid span gets "" (the official v1.1 metric scores it 0)."""
    import torch

    if len(start_logits) != len(meta) or len(end_logits) != len(meta):
        raise ValueError(f"{len(start_logits)} start / {len(end_logits)} end logit rows for {len(meta)} features")
    score, start, end = _best_spans(torch.as_tensor(start_logits), torch.as_tensor(end_logits),
                                    meta.context_mask, n_best_size, max_answer_length)
    best: dict[int, tuple[float, int]] = {}
    for f, (ex, s) in enumerate(zip(meta.example_index.tolist(), score.tolist())):
        if s > float("-inf") and (ex not in best or s > best[ex][0]):
            best[ex] = (s, f)
    predictions = {}
    for ex_index, ex in enumerate(examples):
        if ex_index not in best:
            predictions[ex.qid] = ""
            continue
        f = best[ex_index][1]
        char_start = int(meta.offsets[f, start[f], 0])
        char_end = int(meta.offsets[f, end[f], 1])
        predictions[ex.qid] = ex.context[char_start:char_end]
    return predictions
