"""What a worker trains on: the task's datasets, collator, and evaluation, built from a `Job`.

SQuAD: `BertForQuestionAnswering` on SQuAD-v1.1 JSON (real or generated), F1/EM by the official
v1.1 metric. MLM: `BertForMaskedLM` on text files, one token-block dataset per phase sequence
length, masked-LM accuracy on the held-out text.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from scaling_study.config import Job
from scaling_study.errors import ConfigError


@dataclass
class DataFiles:
    train: list[Path]
    dev: list[Path]


def resolve_data_files(job: Job, *, generate: bool = True) -> DataFiles:
    """The job's train/dev files; generates the offline data first when `data.synth` asks for it.

    Called on the driver before Ray starts, so that a missing file fails fast and workers never
    race to write the same generated files.
    """
    d = job.data
    if d.train is not None:
        return DataFiles(_expand(d.train, "data.train", job), _expand(d.dev, "data.dev", job))
    from scaling_study.data.synth import write_synth

    out = Path(d.dir) / d.synth.folder()
    names = {"squad": ("train.json", "dev.json"), "mlm": ("corpus.txt", "corpus_dev.txt")}[job.task]
    paths = [out / n for n in names]
    if generate and not all(p.is_file() for p in paths):
        s = d.synth
        write_synth(out, n_train=s.train, n_dev=s.dev, difficulty=s.difficulty, seed=s.seed,
                    corpus_lines=s.corpus_lines)
    return DataFiles([paths[0]], [paths[1]])


def _expand(pattern: str, key: str, job: Job) -> list[Path]:
    matches = sorted(Path(p) for p in glob.glob(pattern)) if any(c in pattern for c in "*?[") else [Path(pattern)]
    matches = [p for p in matches if p.is_file()]
    if not matches:
        raise ConfigError(key, f"no file at {pattern!r} (relative paths are taken from {Path.cwd()})")
    if job.task == "squad" and len(matches) > 1:
        raise ConfigError(key, f"SQuAD takes one JSON file, {pattern!r} matches {len(matches)}")
    return matches


@dataclass
class TaskData:
    """Everything a worker needs about the data: per-phase train sets, and the evaluator."""
    train_sets: dict[int, Any]
    """seq_len -> torch Dataset of training examples (features)."""
    collate: dict[int, Callable] | None
    """phase index -> batch collator (MLM: masking with the phase's max_predictions); None: default."""
    evaluator: Any
    """`evaluator.run(model, device, rank=, world=, batch_size=, autocast=)` -> metrics dict,
    the same on every rank."""


def build_task_data(job: Job, files: DataFiles, tokenizer) -> TaskData:
    seq_lens = sorted({p.seq_len for p in job.phases()})
    if job.task == "squad":
        return _squad(job, files, tokenizer, seq_lens)
    return _mlm(job, files, tokenizer, seq_lens)


def _squad(job: Job, files: DataFiles, tokenizer, seq_lens: list[int]) -> TaskData:
    from scaling_study.data import squad
    from scaling_study.train.evaluate import SquadEvaluator

    d = job.data
    train_examples = squad.read_squad(files.train[0])
    dev_examples = squad.read_squad(files.dev[0])
    if d.max_eval_examples:
        dev_examples = dev_examples[: d.max_eval_examples]
    kw = dict(doc_stride=d.doc_stride, max_query_length=d.max_query_length)
    sets = {n: squad.train_features(train_examples, tokenizer, max_seq_length=n, **kw) for n in seq_lens}
    evaluator = SquadEvaluator(dev_examples, tokenizer, max_seq_length=seq_lens[-1], n_best_size=d.n_best_size,
                               max_answer_length=d.max_answer_length, **kw)
    return TaskData(sets, None, evaluator)


def _mlm(job: Job, files: DataFiles, tokenizer, seq_lens: list[int]) -> TaskData:
    from scaling_study.data import mlm
    from scaling_study.train.evaluate import MlmEvaluator

    d = job.data
    phases = job.phases()
    collate = {p.index: mlm.mlm_collator(tokenizer, mlm_probability=d.mlm_probability,
                                         max_predictions=p.max_predictions) for p in phases}
    sets = {n: mlm.text_dataset(files.train, tokenizer, n) for n in seq_lens}
    dev = mlm.text_dataset(files.dev, tokenizer, seq_lens[-1])
    if d.max_eval_examples:
        import torch.utils.data as tud
        dev = tud.Subset(dev, range(min(len(dev), d.max_eval_examples)))
    # A fixed masking for the held-out split: the same positions at every evaluation.
    # Held out at the longest sequence length, masked as the (last) phase at that length masks.
    longest = [p for p in phases if p.seq_len == seq_lens[-1]][-1]
    masked = mlm.premask(dev, tokenizer, mlm_probability=d.mlm_probability,
                         max_predictions=longest.max_predictions, seed=job.train.seed)
    evaluator = MlmEvaluator(masked)
    return TaskData(sets, collate, evaluator)
