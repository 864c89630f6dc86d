"""What a worker trains on: the task's datasets, collator, and evaluation, built from a `Job`,
and each rank's stream of micro-batches, which says where it stands so that a restart resumes it.

SQuAD: `BertForQuestionAnswering` on SQuAD-v1.1 JSON (real or generated), F1/EM by the official
v1.1 metric. MLM: `BertForMaskedLM` on text files, one token-block dataset per phase sequence
length, masked-LM accuracy on the held-out text.
"""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from scaling_study.config import Job, Phase
from scaling_study.errors import ConfigError


EVAL_BATCH_SIZE = 32
"""Examples per forward pass of an evaluation, on each worker."""
LOADER_WORKERS = {"cpu": 0, "cuda": 2}
"""Background processes collating a worker's micro-batches, by its device type. A CPU worker
has the threads it was given (`scaling.cpus_per_worker`) and collates in its own process; a GPU
worker's host must keep the GPU fed, so two processes collate (and mask) ahead of it."""


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
    from scaling_study.data.synth import SYNTH_FILES, write_synth

    out = Path(d.dir) / d.synth.folder()
    keys = {"squad": ("train", "dev"), "mlm": ("corpus", "corpus_dev")}[job.task]
    paths = [out / SYNTH_FILES[k] for k in keys]
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


class MicroBatch(NamedTuple):
    """One micro-batch of this rank's shard, with where the stream stands after it."""
    epoch: int
    consumed: int
    """Micro-batches of `epoch` consumed, this one included: where a resumed stream starts."""
    tensors: dict


@dataclass
class TaskData:
    """Everything a worker needs about the data: per-phase train sets, and the evaluator."""
    train_sets: dict[int, Any]
    """seq_len -> torch Dataset of training examples (features)."""
    collate: dict[int, Callable] | None
    """phase index -> batch collator (MLM: masking with the phase's max_predictions); None: default."""
    evaluator: Any
    """`evaluator.run(model, device, rank=, world=, autocast=)` -> metrics dict, the same on every rank."""

    def micro_batches(self, phase: Phase, *, rank: int, world: int, seed: int, device,
                      epoch: int = 0, consumed: int = 0) -> Iterator[MicroBatch]:
        """This rank's micro-batches for `phase`, on `device`, from micro-batch `consumed` of
        `epoch` on, epoch after epoch.

        A `DistributedSampler` (seeded per phase, reshuffled each epoch) shards the data; resuming
        starts from the sampler's indices of the first micro-batch not consumed, reading none of
        the ones before. A `DataLoader` collates them (see `LOADER_WORKERS`); on a GPU it pins
        them, so that the copy to the device does not wait for the host. MLM masking is seeded by
        the micro-batch's place (seed, phase, rank, epoch, index): the same masks however many
        loader processes draw them, and after a restart.
        """
        import torch

        dataset, shard_rank, shards = self.train_sets[phase.seq_len], rank, world
        if hasattr(dataset, "for_rank"):  # pre-tokenised shards: each rank reads its own files only
            dataset, shard_rank, shards = dataset.for_rank(rank, world), 0, 1
        sampler = torch.utils.data.DistributedSampler(
            dataset, num_replicas=shards, rank=shard_rank, shuffle=True, seed=seed + 1000 * phase.index,
            drop_last=True)
        size = phase.per_worker_batch
        per_epoch = len(sampler) // size
        if per_epoch == 0:
            raise ValueError(f"phase {phase.index + 1}: {len(dataset)} training examples are fewer than "
                             f"per_worker_batch x workers = {size} x {world}")
        device = torch.device(device)
        workers = LOADER_WORKERS[device.type]
        collate = self.collate[phase.index] if self.collate is not None else None
        loader = torch.utils.data.DataLoader(
            _MicroBatchReader(dataset, collate, (seed, phase.index, rank)),
            sampler=_places(sampler, size, per_epoch, epoch, consumed), batch_size=None,
            num_workers=workers, pin_memory=device.type == "cuda",
            # fork: the loader processes share the dataset's tensors instead of each unpickling a
            # copy (they never touch CUDA). A generator of its own: iterating must not draw from
            # the global RNG, whose state a checkpoint restores.
            multiprocessing_context="fork" if workers else None, generator=torch.Generator())
        for batch in loader:
            yield batch._replace(tensors={k: v.to(device, non_blocking=True) for k, v in batch.tensors.items()})


def _places(sampler, size: int, per_epoch: int, epoch: int, consumed: int) -> Iterator[tuple]:
    """(epoch, micro-batches of it consumed after this one, its dataset indices), from
    micro-batch `consumed` of `epoch` on, forever."""
    while True:
        sampler.set_epoch(epoch)
        indices = list(sampler)
        for b in range(consumed, per_epoch):
            yield epoch, b + 1, indices[b * size:(b + 1) * size]
        epoch, consumed = epoch + 1, 0


class _MicroBatchReader:
    """A map-style dataset whose items are micro-batches: a `_places` key -> its `MicroBatch`,
    collated on the CPU (in a loader process where there are some)."""

    def __init__(self, dataset, collate: Callable | None, seed_key: tuple[int, ...]):
        self.dataset, self.collate, self.seed_key = dataset, collate, seed_key

    def __getitem__(self, place: tuple) -> MicroBatch:
        import torch

        epoch, consumed, indices = place
        items = [self.dataset[i] for i in indices]
        if self.collate is None:
            return MicroBatch(epoch, consumed, torch.utils.data.default_collate(items))
        # The collator (MLM masking) draws from torch's global CPU generator: seed it for this
        # micro-batch, and give the caller's state back (dropout on a CPU worker draws from it).
        saved = torch.get_rng_state()
        torch.default_generator.manual_seed(micro_batch_seed(*self.seed_key, epoch, consumed))
        try:
            return MicroBatch(epoch, consumed, dict(self.collate(items)))
        finally:
            torch.set_rng_state(saved)


def micro_batch_seed(*place: int) -> int:
    """A seed mixed from the integers of a micro-batch's place (NumPy's `SeedSequence`)."""
    import numpy as np

    return int(np.random.SeedSequence([x % 2**32 for x in place]).generate_state(1)[0])


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
                               max_answer_length=d.max_answer_length, batch_size=EVAL_BATCH_SIZE, **kw)
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
    evaluator = MlmEvaluator(masked, batch_size=EVAL_BATCH_SIZE)
    return TaskData(sets, collate, evaluator)
