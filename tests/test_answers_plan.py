"""The plan a projection is made with: the user's options, checked, and the gradient bytes
counted from the records' model without torch."""
import json
import math

import pandas as pd
import pytest

from scaling_study.answers.links import DEFAULT_ALGORITHM, DEFAULT_CLUSTER
from scaling_study.answers.plan import PlanOptions, bert_config, bert_parameters, model_parameters
from scaling_study.errors import UserError


@pytest.mark.parametrize("task", ["squad", "mlm"])
def test_the_count_is_that_of_the_model_training_builds(task):
    from scaling_study.models import build_model

    model = build_model("tiny", task)  # random weights from a BertConfig: a second or two
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert bert_parameters(bert_config("tiny"), task) == trainable


def test_the_packaged_default_is_minilm_and_a_local_checkpoint_is_read(tmp_path):
    # MiniLM-L6-H384 with a span head, as `build_model("default", "squad")` counts it (22.6 M).
    assert bert_parameters(bert_config("default"), "squad") == 22_566_146
    config = {"model_type": "bert", "vocab_size": 100, "hidden_size": 8, "num_hidden_layers": 1,
              "intermediate_size": 32, "max_position_embeddings": 16, "type_vocab_size": 2}
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps(config))
    assert bert_config(str(tmp_path / "ckpt")) == config
    (tmp_path / "ckpt" / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    with pytest.raises(UserError, match="'roberta' model, not BERT: give --grad-bytes"):
        bert_config(str(tmp_path / "ckpt"))


def test_gradient_bytes_come_from_the_one_model_of_the_records_or_the_flag():
    records = pd.DataFrame({"task": ["squad", "squad"], "model": ["tiny", "tiny"]})
    plan, text = PlanOptions().resolve(records)
    assert plan.grad_bytes == 4 * bert_parameters(bert_config("tiny"), "squad")
    assert (str(plan.cluster), plan.algorithm, plan.overlap) == ("nvlink4+8xnet400 (8/node)", DEFAULT_ALGORITHM, 0.0)
    assert DEFAULT_CLUSTER == "nvlink4+8xnet400" and "4.37 M parameters × 4 bytes" in text
    plan, text = PlanOptions(grad_bytes=1e9, cluster="pcie4+net100", overlap=0.25).resolve(records.iloc[:0])
    assert plan.grad_bytes == 1e9 and plan.cluster.nics == 1 and "(--grad-bytes), 25%" in text
    for table, message in (
        (records.assign(model=["tiny", "base"]), r"2 task/model pairs \(squad/tiny, squad/base\)"),
        (records.assign(model="bert-base-uncased"), "model 'bert-base-uncased': its size cannot be read here"),
        (records.assign(model="./gone"), "model './gone': its size cannot be read here"),
        (records.drop(columns="model"), "no task and model columns"),
    ):
        with pytest.raises(UserError, match=message + ".*--grad-bytes"):
            model_parameters(table)


@pytest.mark.parametrize("options, flag", [
    (dict(cluster="ethernet"), "--cluster 'ethernet'"),
    (dict(algorithm="tree"), "--algorithm 'tree': valid algorithms are ring, hierarchical"),
    (dict(overlap=-0.1), "--overlap -0.1"),
    (dict(grad_bytes=math.inf), "--grad-bytes inf"),
])
def test_each_option_is_checked_naming_its_flag(options, flag):
    with pytest.raises(UserError, match=flag):
        PlanOptions(**options)
