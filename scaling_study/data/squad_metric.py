"""The official SQuAD v1.1 metric (``evaluate-v1.1.py``): exact match and token F1, each the max
over a question's gold answers, averaged over all questions and given as percentages.

Answers are compared after normalisation: lower case, punctuation removed, the articles
a/an/the removed, whitespace collapsed. A question with no prediction scores 0 (and is reported
on stderr, as the official script does).
"""
from __future__ import annotations

import re
import string
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

EXPECTED_VERSION = "1.1"
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Lower case, drop punctuation, drop articles, collapse whitespace (in the official order)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def exact_match_score(prediction: str, ground_truth: str) -> bool:
    """True when the normalised strings are equal."""
    return normalize_answer(prediction) == normalize_answer(ground_truth)


def f1_score(prediction: str, ground_truth: str) -> float:
    """Harmonic mean of token precision and recall of the normalised answers (bag of tokens).

    As in v1.1, an empty normalised prediction or ground truth scores 0.
    """
    pred_tokens = normalize_answer(prediction).split()
    truth_tokens = normalize_answer(ground_truth).split()
    num_same = sum((Counter(pred_tokens) & Counter(truth_tokens)).values())
    if num_same == 0:
        return 0.0
    precision = num_same / len(pred_tokens)
    recall = num_same / len(truth_tokens)
    return 2 * precision * recall / (precision + recall)


def metric_max_over_ground_truths(metric: Callable[[str, str], float], prediction: str,
                                  ground_truths: Iterable[str]) -> float:
    """The best score of ``prediction`` against any of the gold answers."""
    return max(float(metric(prediction, gt)) for gt in ground_truths)


def _score(questions: Iterable[tuple[str, list[str]]], predictions: Mapping[str, str]) -> dict[str, float]:
    exact_match = f1 = 0.0
    total = 0
    for qid, gold in questions:
        total += 1
        if qid not in predictions:
            print(f"Unanswered question {qid} will receive score 0.", file=sys.stderr)
            continue
        exact_match += metric_max_over_ground_truths(exact_match_score, predictions[qid], gold)
        f1 += metric_max_over_ground_truths(f1_score, predictions[qid], gold)
    if total == 0:
        raise ValueError("no questions to evaluate")
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def gold_answers(dataset_json: dict | list) -> list[tuple[str, list[str]]]:
    """(question id, gold answer texts) of every question of a SQuAD document (the whole file as
    loaded, ``{"version", "data": [...]}``, or its ``data`` list), in file order.

    Reads what ``evaluate-v1.1.py`` reads and nothing else: ids and answer texts. Contexts and
    ``answer_start`` offsets are not looked at, so a file whose offsets do not match its context
    scores as the official script scores it (the training reader, ``data.squad.read_squad``,
    rejects such a file). Raises ValueError naming the JSON path of anything the script could
    not read.
    """
    if isinstance(dataset_json, dict):
        data = _field(dataset_json, "data", list, "$", "a list of articles")
    elif isinstance(dataset_json, list):
        data = dataset_json
    else:
        raise ValueError(f"$: expected an object with 'version' and 'data', got {type(dataset_json).__name__}")
    out = []
    for a, article in enumerate(data):
        paragraphs = _field(article, "paragraphs", list, f"data[{a}]", "a list of paragraphs")
        for p, para in enumerate(paragraphs):
            qas = _field(para, "qas", list, f"data[{a}].paragraphs[{p}]", "a list of questions")
            for q, qa in enumerate(qas):
                path = f"data[{a}].paragraphs[{p}].qas[{q}]"
                qid = _field(qa, "id", str, path, "the question id")
                answers = _field(qa, "answers", list, path, "a list of {text, ...}")
                if not answers:
                    raise ValueError(f"{path}.answers: empty; a v1.1 question has at least one gold answer")
                out.append((qid, [_field(ans, "text", str, f"{path}.answers[{i}]", "the answer text")
                                  for i, ans in enumerate(answers)]))
    return out


def _field(obj, key: str, kind: type, path: str, what: str):
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected an object with '{key}', got {type(obj).__name__}")
    if key not in obj:
        raise ValueError(f"{path}: missing key '{key}' ({what})")
    if not isinstance(obj[key], kind):
        raise ValueError(f"{path}.{key}: expected {what}, got {type(obj[key]).__name__}")
    return obj[key]


def evaluate(dataset_json: dict | list, predictions: Mapping[str, str]) -> dict[str, float]:
    """``{"exact_match", "f1"}`` in percent over every question of a SQuAD JSON document
    (see `gold_answers`), as ``evaluate-v1.1.py`` computes them."""
    return _score(gold_answers(dataset_json), predictions)


def evaluate_examples(examples, predictions: Mapping[str, str]) -> dict[str, float]:
    """The same metric over ``SquadExample`` objects (each with its list of gold answers)."""
    return _score(((ex.qid, [text for text, _ in ex.answers]) for ex in examples), predictions)
