"""The synthetic SQuAD generator: deterministic by seed, valid SQuAD v1.1, harder when asked."""
import os
import statistics

os.environ["HF_HUB_OFFLINE"] = "1"

import pytest

from scaling_study.cli import main
from scaling_study.data.squad import read_squad
from scaling_study.data.synth import generate_squad, write_synth
from scaling_study.errors import UserError

SMALL = dict(n_train=60, n_dev=30, corpus_lines=20)


def _bytes(paths):
    return {name: path.read_bytes() for name, path in paths.items()}


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = _bytes(write_synth(tmp_path / "a", difficulty=0.5, seed=7, **SMALL))
    b = _bytes(write_synth(tmp_path / "b", difficulty=0.5, seed=7, **SMALL))
    c = _bytes(write_synth(tmp_path / "c", difficulty=0.5, seed=8, **SMALL))
    assert a == b
    assert all(a[name] != c[name] for name in a)
    assert sorted(a) == ["corpus", "corpus_dev", "dev", "train"]


@pytest.mark.parametrize("difficulty", [0.0, 0.5, 1.0])
def test_files_are_valid_squad_with_answers_at_answer_start(tmp_path, difficulty):
    paths = write_synth(tmp_path, difficulty=difficulty, seed=1, **SMALL)
    train, dev = read_squad(paths["train"]), read_squad(paths["dev"])  # checks every answer_start
    assert len(train) == SMALL["n_train"] and len(dev) == SMALL["n_dev"]
    assert len({ex.qid for ex in train + dev}) == len(train) + len(dev)
    assert all(len(ex.answers) == 1 for ex in train)
    assert all(1 <= len(ex.answers) <= 3 for ex in dev)
    assert sum(len(ex.answers) > 1 for ex in dev) >= len(dev) // 3   # variants where natural
    for ex in train + dev:
        text, _ = ex.answers[0]
        assert text not in ex.question  # extractive from the context, never read off the question
    assert len(paths["corpus"].read_text().splitlines()) == SMALL["corpus_lines"]


def test_questions_are_paraphrased():
    doc = generate_squad(300, difficulty=0.0, seed=0, variants=False, id_prefix="t")
    questions = [qa["question"] for a in doc["data"] for p in a["paragraphs"] for qa in p["qas"]]
    openings = {" ".join(q.split()[:2]) for q in questions}
    assert len(openings) >= 15  # many templates in use, not one fixed form per fact


def test_difficulty_makes_longer_contexts_with_more_people():
    def context_tokens(difficulty):
        from scaling_study.models import load_tokenizer

        tok = load_tokenizer("default")
        doc = generate_squad(60, difficulty=difficulty, seed=3, variants=False, id_prefix="t")
        return [len(tok(p["context"])["input_ids"]) for a in doc["data"] for p in a["paragraphs"]]

    easy, hard = context_tokens(0.0), context_tokens(1.0)
    assert max(easy) + 24 <= 128          # question + context fit one 128-token window at 0
    assert statistics.mean(hard) > 2 * statistics.mean(easy)
    assert max(hard) > 128                # and need several windows near 1


@pytest.mark.parametrize("kwargs, message", [
    (dict(difficulty=1.5), "--difficulty must be a number in \\[0, 1\\]"),
    (dict(difficulty=0.0, n_train=0), "--train must be a positive integer"),
])
def test_bad_arguments_write_nothing(tmp_path, kwargs, message):
    args = dict(SMALL, difficulty=0.0, seed=0) | kwargs
    with pytest.raises(UserError, match=message):
        write_synth(tmp_path / "out", **args)
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_files(tmp_path, capsys):
    out = tmp_path / "synth"
    assert main(["data", "squad-synth", "--out", str(out), "--train", "12", "--dev", "6",
                 "--difficulty", "0.2", "--seed", "3", "--corpus-lines", "10"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["corpus.txt", "corpus_dev.txt", "dev.json", "train.json"]
    assert len(read_squad(out / "dev.json")) == 6
    assert "train.json" in capsys.readouterr().out
