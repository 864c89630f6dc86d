"""The SQuAD reader, features and post-processing on a small hand-written file with the tricky
cases: several gold answers, unicode, a context longer than the window, a long question."""
import json
import os
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported: never reach for the hub

import pytest
import torch

from scaling_study.data.squad import eval_features, postprocess, read_squad, train_features
from scaling_study.data.squad_metric import evaluate_examples
from scaling_study.errors import UserError
from scaling_study.models import load_tokenizer

TRICKY = Path(__file__).parent / "data" / "squad_tricky.json"
# Small windows so the 200-token context splits into several of them.
WINDOW = dict(max_seq_length=64, doc_stride=16, max_query_length=16)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer("default")


@pytest.fixture(scope="module")
def examples():
    return read_squad(TRICKY)


def by_id(examples):
    return {ex.qid: ex for ex in examples}


def test_reader_keeps_every_gold_answer_and_unicode(examples):
    ex = by_id(examples)
    assert [ex.qid for ex in examples] == ["u1", "u2", "u3", "l1", "l2", "l3"]
    assert ex["u1"].answers == [("Zürich", 42), ("in Zürich", 39), ("Zürich", 42)]
    assert ex["u1"].title == "Unicode_café"
    for e in examples:
        for text, start in e.answers:
            assert e.context[start:start + len(text)] == text


def _write(tmp_path, doc) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def _doc(qa=None, **para):
    qa = qa if qa is not None else {"id": "a", "question": "q?", "answers": [{"text": "cat", "answer_start": 4}]}
    return {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": "the cat", "qas": [qa], **para}]}]}


@pytest.mark.parametrize("doc, where", [
    ({"version": "1.1"}, "$: missing key 'data'"),
    ({"data": [{"title": "t", "paragraphs": [{"context": "x"}]}]}, "data[0].paragraphs[0]: missing key 'qas'"),
    (_doc(context=7), "data[0].paragraphs[0].context: expected the context text, got int"),
    (_doc({"id": "a", "question": "q?", "answers": [{"text": "cat", "answer_start": "4"}]}),
     "data[0].paragraphs[0].qas[0].answers[0].answer_start: expected"),
    (_doc({"id": "a", "question": "q?", "answers": [{"text": "cat", "answer_start": 3}]}),
     "data[0].paragraphs[0].qas[0].answers[0].answer_start: context[3:6] is ' ca'"),
    (_doc({"id": "a", "question": "q?", "answers": [], "is_impossible": True}), "v2.0 unanswerable"),
])
def test_reader_names_file_and_json_path(tmp_path, doc, where):
    path = _write(tmp_path, doc)
    with pytest.raises(UserError) as err:
        read_squad(path)
    assert str(path) in str(err.value) and where in str(err.value)


def test_reader_rejects_duplicate_ids_and_bad_json(tmp_path):
    doc = _doc()
    doc["data"][0]["paragraphs"][0]["qas"].append(doc["data"][0]["paragraphs"][0]["qas"][0])
    with pytest.raises(UserError, match=r"qas\[1\]\.id: 'a' already used at data\[0\]\.paragraphs\[0\]\.qas\[0\]"):
        read_squad(_write(tmp_path, doc))
    (tmp_path / "broken.json").write_text("{\"data\": [")
    with pytest.raises(UserError, match="broken.json: not valid JSON"):
        read_squad(tmp_path / "broken.json")
    with pytest.raises(UserError, match="missing.json: cannot read"):
        read_squad(tmp_path / "missing.json")


def test_train_features_answer_in_later_window(examples, tokenizer):
    ds = train_features(examples, tokenizer, **WINDOW)
    _, meta = eval_features(examples, tokenizer, **WINDOW)
    assert len(ds) == len(meta)
    windows = [i for i in range(len(ds)) if examples[int(meta.example_index[i])].qid == "l2"]
    assert len(windows) > 2                       # the long context is split
    starts = [int(ds[i]["start_positions"]) for i in windows]
    # The answer (last sentence) is only in the last window; the others point at [CLS].
    assert starts[:-1] == [0] * (len(windows) - 1) and starts[-1] > 0
    last = ds[windows[-1]]
    span = last["input_ids"][last["start_positions"]:last["end_positions"] + 1]
    assert tokenizer.decode(span) == "kirkwall"


def test_train_features_answer_in_first_window_only(examples, tokenizer):
    ds = train_features(examples, tokenizer, **WINDOW)
    _, meta = eval_features(examples, tokenizer, **WINDOW)
    rows = [ds[i] for i in range(len(ds)) if examples[int(meta.example_index[i])].qid == "l1"]
    assert int(rows[0]["start_positions"]) > 0
    assert all(int(r["start_positions"]) == 0 == int(r["end_positions"]) for r in rows[1:])


def test_features_are_padded_windows_that_overlap_by_the_stride(examples, tokenizer):
    ds, meta = eval_features(examples, tokenizer, **WINDOW)
    assert all(ds[i]["input_ids"].shape == (64,) for i in range(len(ds)))
    windows = [i for i in range(len(ds)) if examples[int(meta.example_index[i])].qid == "l1"]
    for a, b in zip(windows, windows[1:]):
        ctx_a = meta.offsets[a][meta.context_mask[a]].tolist()
        ctx_b = meta.offsets[b][meta.context_mask[b]].tolist()
        assert ctx_a[-WINDOW["doc_stride"]:] == ctx_b[:WINDOW["doc_stride"]]


def test_long_question_is_cut_to_max_query_length(examples, tokenizer):
    ds, meta = eval_features(examples, tokenizer, **WINDOW)
    for i in range(len(ds)):
        question_tokens = int((ds[i]["token_type_ids"] == 0).sum() - ds[i]["attention_mask"].eq(0).sum()) - 2
        qid = examples[int(meta.example_index[i])].qid
        if qid == "l3":
            assert question_tokens == WINDOW["max_query_length"]
        else:
            assert question_tokens < WINDOW["max_query_length"]


def test_window_too_short_for_query_and_stride_is_a_user_error(examples, tokenizer):
    with pytest.raises(UserError, match="max_seq_length=64 is too short.*at least 84"):
        train_features(examples, tokenizer, max_seq_length=64, doc_stride=32, max_query_length=48)


def _gold_logits(examples, tokenizer, meta, qids_to_hit):
    """Logits that peak (10) at the gold span of each question's answering window, with a
    higher peak (100) on a question token, which post-processing must ignore."""
    train = train_features(examples, tokenizer, **WINDOW)
    start = torch.zeros(len(meta), 64)
    end = torch.zeros(len(meta), 64)
    start[:, 1] = end[:, 1] = 100.0
    for f in range(len(meta)):
        s, e = int(train[f]["start_positions"]), int(train[f]["end_positions"])
        if s > 0 and examples[int(meta.example_index[f])].qid in qids_to_hit:
            start[f, s], end[f, e] = 10.0, 10.0
    return start, end


def test_postprocess_recovers_unicode_answers_across_windows(examples, tokenizer):
    _, meta = eval_features(examples, tokenizer, **WINDOW)
    start, end = _gold_logits(examples, tokenizer, meta, {ex.qid for ex in examples})
    predictions = postprocess(examples, meta, start, end)
    assert predictions["u1"] == "Zürich"
    assert predictions["u3"] == "ミドリ"           # the tokenizer strips the dakuten; offsets do not
    assert predictions["l2"] == "Kirkwall"        # found in the last of several windows
    assert evaluate_examples(examples, predictions) == {"exact_match": 100.0, "f1": 100.0}


def test_postprocess_honours_max_answer_length(examples, tokenizer):
    _, meta = eval_features(examples, tokenizer, **WINDOW)
    start, end = _gold_logits(examples, tokenizer, meta, {"l1"})
    f, s = (start == 10.0).nonzero()[0].tolist()
    end[f, s] = 5.0   # "Marguerite" as a one-token answer: 10 + 5 < 10 + 10
    assert postprocess(examples, meta, start, end)["l1"] == "Marguerite Olsen"
    # With spans of at most one token the two-token answer is out; the next best is kept.
    assert postprocess(examples, meta, start, end, max_answer_length=1)["l1"] == "Marguerite"


def test_postprocess_checks_logit_rows(examples, tokenizer):
    _, meta = eval_features(examples, tokenizer, **WINDOW)
    with pytest.raises(ValueError, match="for 19 features"):
        postprocess(examples, meta, torch.zeros(3, 64), torch.zeros(3, 64))
