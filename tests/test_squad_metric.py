"""The official SQuAD v1.1 metric against hand-computed cases, and `scaling-study squad-eval`."""
import copy
import json
from pathlib import Path

import pytest

from scaling_study.cli import main
from scaling_study.data.squad import SquadExample, read_squad
from scaling_study.data.squad_metric import (evaluate, evaluate_examples, exact_match_score, f1_score,
                                             normalize_answer)
from scaling_study.errors import UserError

TRICKY = Path(__file__).parent / "data" / "squad_tricky.json"


@pytest.mark.parametrize("raw, normalized", [
    ("The  Quick, brown fox!", "quick brown fox"),
    ("An apple a day", "apple day"),
    ("theater anthem", "theater anthem"),        # articles only as whole words
    ("Levi's Stadium", "levis stadium"),         # punctuation removed, not replaced by a space
    ("  THE\tEnd.\n", "end"),
    ("Zürich", "zürich"),                        # non-ASCII letters are kept
])
def test_normalize_answer(raw, normalized):
    assert normalize_answer(raw) == normalized


def test_f1_hand_computed():
    # pred {cat, sat}; gold {cat, sat, on, mat}: precision 1, recall 1/2 -> F1 2/3
    assert f1_score("the cat sat", "cat sat on the mat") == pytest.approx(2 / 3)
    # bag of tokens: {cat, cat, dog} & {cat, dog, dog} share 2 -> P = R = 2/3
    assert f1_score("cat cat dog", "cat dog dog") == pytest.approx(2 / 3)
    assert f1_score("Denver Broncos", "the denver broncos.") == 1.0
    assert f1_score("", "cat") == 0.0


def test_empty_after_normalisation_is_exact_but_f1_zero():
    # v1.1 quirk kept on purpose: "the" and "a" both normalise to "" -> EM 1, F1 0.
    assert exact_match_score("the", "a")
    assert f1_score("the", "a") == 0.0


DATASET = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{
    "context": "The Denver Broncos played at Levi's Stadium in Santa Clara, California.",
    "qas": [
        {"id": "q1", "question": "Who played?", "answers": [
            {"text": "Denver Broncos", "answer_start": 4}, {"text": "The Denver Broncos", "answer_start": 0}]},
        {"id": "q2", "question": "Where?", "answers": [
            {"text": "Santa Clara, California", "answer_start": 47}, {"text": "Levi's Stadium", "answer_start": 29}]},
    ]}]}]}
# q2: pred {levis, stadium, in, santa, clara} vs {santa, clara, california}: P 2/5, R 2/3 -> F1 1/2;
#     vs {levis, stadium}: P 2/5, R 1 -> F1 4/7. The max over gold answers is 4/7.
PREDICTIONS = {"q1": "denver broncos", "q2": "Levi's Stadium in Santa Clara"}
EXPECTED = {"exact_match": 50.0, "f1": 100 * (1 + 4 / 7) / 2}


def test_evaluate_max_over_gold_answers():
    result = evaluate(DATASET, PREDICTIONS)
    assert result["exact_match"] == pytest.approx(EXPECTED["exact_match"])
    assert result["f1"] == pytest.approx(EXPECTED["f1"])


def test_unanswered_question_scores_zero(capsys):
    result = evaluate(DATASET, {"q1": "Denver Broncos"})
    assert result == {"exact_match": 50.0, "f1": 50.0}
    assert "Unanswered question q2" in capsys.readouterr().err


def test_evaluate_examples_matches_evaluate():
    examples = [SquadExample(qa["id"], "t", DATASET["data"][0]["paragraphs"][0]["context"], qa["question"],
                             [(a["text"], a["answer_start"]) for a in qa["answers"]])
                for qa in DATASET["data"][0]["paragraphs"][0]["qas"]]
    assert evaluate_examples(examples, PREDICTIONS) == evaluate(DATASET, PREDICTIONS)


def test_squad_eval_cli_prints_official_json(tmp_path, capsys):
    data, preds = tmp_path / "dev.json", tmp_path / "pred.json"
    data.write_text(json.dumps(DATASET))
    preds.write_text(json.dumps(PREDICTIONS))
    assert main(["squad-eval", str(data), str(preds)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == pytest.approx(EXPECTED)


def test_squad_eval_cli_rejects_bad_predictions(tmp_path, capsys):
    data, preds = tmp_path / "dev.json", tmp_path / "pred.json"
    data.write_text(json.dumps(DATASET))
    preds.write_text(json.dumps(["not", "a", "dict"]))
    assert main(["squad-eval", str(data), str(preds)]) == 2
    assert "pred.json" in capsys.readouterr().err


def _qas(doc):
    return [qa for article in doc["data"] for para in article["paragraphs"] for qa in para["qas"]]


def test_squad_eval_reads_only_answer_texts_as_the_official_script(tmp_path, capsys):
    doc = json.loads(TRICKY.read_text(encoding="utf-8"))
    moved = copy.deepcopy(doc)  # every answer_start off by one; one answer without it at all
    for qa in _qas(moved):
        for ans in qa["answers"]:
            ans["answer_start"] += 1
    del _qas(moved)[0]["answers"][0]["answer_start"]
    (tmp_path / "moved.json").write_text(json.dumps(moved), encoding="utf-8")
    with pytest.raises(UserError, match="answer_start"):
        read_squad(tmp_path / "moved.json")  # the training reader stays strict

    preds = {qa["id"]: qa["answers"][-1]["text"] for qa in _qas(doc)}
    preds[_qas(doc)[0]["id"]] = "Paris"  # one wrong answer of six
    (tmp_path / "pred.json").write_text(json.dumps(preds), encoding="utf-8")
    assert main(["squad-eval", str(tmp_path / "moved.json"), str(tmp_path / "pred.json")]) == 0
    moved_score = json.loads(capsys.readouterr().out)
    assert main(["squad-eval", str(TRICKY), str(tmp_path / "pred.json")]) == 0
    assert json.loads(capsys.readouterr().out) == moved_score
    assert moved_score == pytest.approx({"exact_match": 500 / 6, "f1": 500 / 6})


@pytest.mark.parametrize("cut, where", [
    (lambda d: d.pop("data"), "$: missing key 'data'"),
    (lambda d: _qas(d)[1].pop("answers"), "data[0].paragraphs[0].qas[1]: missing key 'answers'"),
    (lambda d: _qas(d)[1]["answers"][0].update(text=7), "data[0].paragraphs[0].qas[1].answers[0].text: expected"),
    (lambda d: _qas(d)[1].update(answers=[]), "data[0].paragraphs[0].qas[1].answers: empty"),
])
def test_squad_eval_names_the_json_path_it_cannot_read(tmp_path, capsys, cut, where):
    doc = json.loads(TRICKY.read_text(encoding="utf-8"))
    cut(doc)
    (tmp_path / "dev.json").write_text(json.dumps(doc), encoding="utf-8")
    (tmp_path / "pred.json").write_text("{}")
    assert main(["squad-eval", str(tmp_path / "dev.json"), str(tmp_path / "pred.json")]) == 2
    assert f"dev.json: {where}" in capsys.readouterr().err
