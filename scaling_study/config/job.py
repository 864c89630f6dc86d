"""The job: one run of one task, as written in `jobs/*.yaml`.

Each section is a small `@dataclass(kw_only=True)` with single-field checks in `__post_init__`;
cross-field checks (batch arithmetic, phases, the target's metric) run once in `Job.__post_init__`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from scaling_study.config.schema import FieldError, check_choice, check_finite_values, check_number
from scaling_study.contract import task_metrics
from scaling_study.optim.groups import NO_DECAY
from scaling_study.optim.names import OPTIMIZER_NAMES, SCHEDULE_NAMES
from scaling_study.optim.scaling import LR_RULES
from scaling_study.storage import results_dir



def _check_warmup(key: str, value: float) -> None:
    """A warmup is a ratio of its phase's steps in [0, 1) or a whole number of steps (>= 1)."""
    check_number(key, value, ge=0)
    if value >= 1 and value != int(value):
        raise FieldError(key, f"{value:g} is neither a ratio < 1 of the phase's steps nor a whole number of steps")


@dataclass(kw_only=True)
class ModelConfig:
    name: str = "default"
    """'default' (the packaged MiniLM-L6-H384), a size built from a BertConfig (tiny, mini, small,
    base, large), a local directory, or a hub name."""
    max_seq_length: int = 128
    """Tokens per sequence (SQuAD windows; MLM phase 1 unless a phase sets its own)."""
    dropout: float | None = None
    """Override the model's hidden and attention dropout (null: keep the checkpoint's/size's)."""
    tokenizer: str | None = None
    """The tokenizer: a folder with tokenizer.json, or a hub name (null: the model's own; a named
    size takes the packaged MiniLM's uncased WordPiece vocabulary)."""

    def __post_init__(self):
        if not self.name.strip():
            raise FieldError("name", "is empty; give 'default', a size, a local checkpoint folder or a hub name")
        if self.tokenizer is not None and not self.tokenizer.strip():
            raise FieldError("tokenizer", "is empty; give a folder with tokenizer.json, a hub name, or null")
        check_number("max_seq_length", self.max_seq_length, gt=0)
        check_number("dropout", self.dropout, ge=0, lt=1, allow_none=True)


@dataclass(kw_only=True)
class SynthConfig:
    """Generated SQuAD-format data (written once to `data.dir` when its files are missing)."""
    train: int = 2000
    """Training questions to generate."""
    dev: int = 200
    """Dev questions to generate."""
    difficulty: float = 0.0
    """0 (two people, two facts each: fits 128 tokens) to 1 (five people, pronouns, distractors)."""
    seed: int = 0
    """Generator seed (the output is a pure function of these parameters)."""
    corpus_lines: int = 4000
    """Lines of the MLM text corpus generated alongside."""

    def __post_init__(self):
        for name in ("train", "dev", "corpus_lines"):
            check_number(name, getattr(self, name), gt=0)
        check_number("difficulty", self.difficulty, ge=0, le=1)

    def folder(self) -> str:
        """A folder name per parameter set, so jobs with different data never share files."""
        return f"squad-synth_t{self.train}_d{self.dev}_x{self.difficulty:g}_s{self.seed}_c{self.corpus_lines}"


@dataclass(kw_only=True)
class DataConfig:
    train: str | None = None
    """SQuAD JSON file (squad) or a text file / glob of text files (mlm). Relative paths are
    resolved against the current directory."""
    dev: str | None = None
    """The held-out file: SQuAD dev JSON or held-out text."""
    synth: SynthConfig | None = None
    """Generate offline data into `dir` (used when `train`/`dev` are not given)."""
    dir: str = "data/synth"
    """Where generated data lives (in a subfolder named after the `synth` parameters)."""
    doc_stride: int = 64
    """SQuAD: context tokens two consecutive windows share (transformers' stride)."""
    max_query_length: int = 32
    """SQuAD: question tokens kept at most."""
    max_answer_length: int = 30
    """SQuAD post-processing: longest answer span in tokens."""
    n_best_size: int = 20
    """SQuAD post-processing: start/end candidates per window."""
    max_eval_examples: int | None = None
    """Evaluate on the first N dev examples only (None: all)."""
    max_predictions: int = 20
    """MLM: masked positions per sequence at most (BERT's max_predictions_per_seq)."""
    mlm_probability: float = 0.15
    """MLM: fraction of tokens masked (BERT: 0.15)."""

    def __post_init__(self):
        for name in ("doc_stride", "max_query_length", "max_answer_length", "n_best_size", "max_predictions"):
            check_number(name, getattr(self, name), gt=0)
        check_number("max_eval_examples", self.max_eval_examples, gt=0, allow_none=True)
        check_number("mlm_probability", self.mlm_probability, gt=0, lt=1)
        if self.train is None and self.synth is None:
            raise FieldError("train", "give a training file, or `data.synth` to generate data offline")
        if (self.train is None) != (self.dev is None):
            raise FieldError("dev", "give both `data.train` and `data.dev`, or neither (with `data.synth`)")


@dataclass(kw_only=True)
class OptimizerConfig:
    name: str = "lamb"
    """A registered optimizer (lamb, lans, lars, adamw, radam; see `scaling_study.optim.names`)
    or an import path `pkg.mod:Class`."""
    lr: float = 1e-3
    """Peak learning rate at `schedule.reference_batch` (scaled to the global batch by `schedule.lr_rule`)."""
    weight_decay: float = 0.01
    """Decoupled weight decay (0 for the no_decay group)."""
    args: dict[str, Any] = field(default_factory=dict)
    """Extra constructor arguments (betas, eps, momentum, trust_coefficient, always_adapt, ...)."""
    no_decay: list[str] = field(default_factory=lambda: list(NO_DECAY))
    """Parameter-name patterns put in the weight_decay=0 group (also excluded from layer adaptation)."""

    def __post_init__(self):
        # An import path is imported (with torch) by `check_components`, not at load time.
        if self.name.lower() not in OPTIMIZER_NAMES and ":" not in self.name and "." not in self.name:
            raise FieldError("name", f"{self.name!r} is not a registered optimizer; valid: "
                                     f"{', '.join(OPTIMIZER_NAMES)}, or an import path 'package.module:Class'")
        check_number("lr", self.lr, gt=0)
        check_number("weight_decay", self.weight_decay, ge=0)
        check_finite_values("args", self.args)


@dataclass(kw_only=True)
class ScheduleConfig:
    name: str = "poly"
    """A registered schedule (poly, lans, cosine, constant; see `scaling_study.optim.names`)."""
    warmup: float = 0.1
    """Warmup as a ratio of the phase's steps (< 1) or a number of steps (>= 1)."""
    args: dict[str, Any] = field(default_factory=dict)
    """Schedule options: poly: power, end; lans: constant, degree; cosine: floor."""
    lr_rule: str = "none"
    """How the peak LR follows the global batch from `reference_batch` (LAMB: sqrt; Goyal et al.: linear)."""
    reference_batch: int | None = None
    """The global batch at which `optimizer.lr` is given (default: the job's own global batch)."""

    def __post_init__(self):
        check_choice("name", self.name, SCHEDULE_NAMES, "a registered schedule")
        _check_warmup("warmup", self.warmup)
        check_choice("lr_rule", self.lr_rule, LR_RULES, "an LR scaling rule")
        check_finite_values("args", self.args)
        check_number("reference_batch", self.reference_batch, gt=0, allow_none=True)


@dataclass(kw_only=True)
class ScalingConfig:
    num_workers: int | list[int] = 2
    """Data-parallel Ray Train workers (0: run in the calling process), or [MIN, MAX]: an elastic
    run (Ray Train's elastic worker group). It starts once MIN workers fit, goes on with fewer
    after losing a node (down to MIN) and grows again up to MAX when room appears, each change a
    restart from the latest checkpoint; the global batch stays fixed (`train.global_batch`,
    required) and the accumulation follows the worker count, so a change costs speed, never the
    optimizer's trajectory."""
    elastic_resize_interval_s: float = 60.0
    """Elastic runs: seconds between Ray Train's looks for room to grow the worker group (Ray's
    `elastic_resize_monitor_interval_s`)."""
    use_gpu: bool = False
    """One GPU per worker, NCCL between them; with num_workers 0, the calling process's GPU
    (CUDA is used exactly when this is true)."""
    cpus_per_worker: float = 1.0
    """CPUs given to each worker; also its torch thread count (at least 1)."""
    resources_per_worker: dict[str, float] = field(default_factory=dict)
    """Extra Ray resources per worker (e.g. {"GPU": 1} or custom labels)."""
    sparse_embedding_allreduce: bool = True
    """CPU workers (gloo): all-reduce the word embedding's gradient as the sparse rows a batch
    touched, not the dense vocab x hidden matrix. Only where it applies: several CPU workers and
    input embeddings not tied to an output layer (SQuAD; MLM ties them)."""
    placement_timeout_s: float = 600.0
    """Seconds to wait for room for the workers (Ray placing their placement group) before the run
    fails, naming what it asked for and what holds the cluster; in a sweep that trial fails alone
    and the others go on."""
    nccl_env: dict[str, str] = field(default_factory=dict)
    """NCCL settings set in each GPU worker's environment before its first collective, e.g.
    {NCCL_SOCKET_IFNAME: eth0, NCCL_IB_HCA: mlx5, NCCL_DEBUG: WARN}; every key starts with NCCL_."""
    process_group_timeout_s: int = 1800
    """Seconds a collective may wait for the other workers before the run fails (Ray Train's
    TorchConfig.timeout_s)."""

    def __post_init__(self):
        check_number("placement_timeout_s", self.placement_timeout_s, gt=0)
        check_number("elastic_resize_interval_s", self.elastic_resize_interval_s, gt=0)
        if isinstance(self.num_workers, list):
            n = self.num_workers
            if len(n) != 2 or not 1 <= n[0] < n[1]:
                raise FieldError("num_workers", f"{n} is not an elastic range; valid: [MIN, MAX] with 1 <= MIN < MAX "
                                                "(e.g. [1, 2]), or one worker count")
        elif self.num_workers < 0:
            raise FieldError("num_workers", f"must be >= 1 (0 runs in the driver process), got {self.num_workers}")
        check_number("cpus_per_worker", self.cpus_per_worker, gt=0)
        check_number("process_group_timeout_s", self.process_group_timeout_s, gt=0, integer=True)
        for name, value in self.nccl_env.items():
            if not name.startswith("NCCL_") or not isinstance(value, str):
                raise FieldError(f"nccl_env.{name}", f"{name}: {value!r}: valid: NCCL_* variables with "
                                                     "string values (quote numbers: '1')")
        for name, amount in self.resources_per_worker.items():
            check_number(f"resources_per_worker.{name}", amount, ge=0)

    @property
    def elastic(self) -> bool:
        """`num_workers` is a [MIN, MAX] range."""
        return isinstance(self.num_workers, list)

    @property
    def min_workers(self) -> int:
        """The fewest workers the run trains on (`num_workers` unless elastic)."""
        return self.num_workers[0] if self.elastic else self.num_workers

    @property
    def max_workers(self) -> int:
        """The most workers the run trains on (`num_workers` unless elastic)."""
        return self.num_workers[1] if self.elastic else self.num_workers

    def worker_counts(self) -> list[int]:
        """Every data-parallel world size the run may train on (1 in local mode)."""
        return list(range(max(1, self.min_workers), max(1, self.max_workers) + 1))


@dataclass(kw_only=True)
class PhaseConfig:
    """One phase of training (LAMB/LANS pretraining: 128 tokens, then 512)."""
    steps: int
    """Optimizer steps in this phase."""
    seq_len: int | None = None
    """Tokens per sequence (default: model.max_seq_length)."""
    per_worker_batch: int | None = None
    """Micro-batch per worker (default: train.per_worker_batch)."""
    global_batch: int | None = None
    """Samples per optimizer step (give this or grad_accum; default: the job's)."""
    grad_accum: int | None = None
    """Micro-batches per optimizer step (default: the job's)."""
    warmup: float | None = None
    """This phase's warmup: a ratio of its steps (< 1) or a step count (default: schedule.warmup); each
    phase warms up again."""
    lr: float | None = None
    """This phase's reference LR before the LR rule (default: optimizer.lr)."""
    max_predictions: int | None = None
    """MLM: masked positions per sequence at most in this phase (default: data.max_predictions;
    BERT uses 20 at 128 tokens and 80 at 512)."""

    def __post_init__(self):
        check_number("steps", self.steps, gt=0)
        for name in ("seq_len", "per_worker_batch", "global_batch", "grad_accum", "lr", "max_predictions"):
            check_number(name, getattr(self, name), gt=0, allow_none=True)
        if self.warmup is not None:
            _check_warmup("warmup", self.warmup)


@dataclass(kw_only=True)
class TrainConfig:
    per_worker_batch: int = 16
    """Micro-batch per worker per forward/backward."""
    global_batch: int | None = None
    """Samples per optimizer step = per_worker_batch x workers x grad_accum (give this or grad_accum)."""
    grad_accum: int | None = None
    """Micro-batches accumulated per optimizer step (Determined's aggregation frequency)."""
    steps: int | None = None
    """Optimizer steps in all (give steps, epochs or phases)."""
    epochs: float | None = None
    """Passes over the training data (alone, instead of steps or phases)."""
    phases: list[PhaseConfig] | None = None
    """Training phases, each with its own length, batch and warmup; keys left out take the job's."""
    max_grad_norm: float | None = 1.0
    """Clip the global gradient norm before the optimizer (NVIDIA's LAMB recipe); null: no clipping."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """fp32; bf16 (autocast; on a GPU the step never waits for it); fp16 (autocast + GradScaler,
    GPU only: the scaler reads its overflow flag back once per step, a host sync bf16 avoids)."""
    tf32: bool = True
    """fp32 on GPUs: matrix products in TF32 (torch.set_float32_matmul_precision('high')), several
    times faster on Ampere and later at a 10-bit mantissa; false: strict fp32. No effect on CPUs
    or with bf16/fp16."""
    seed: int = 0
    """Seed of model init, data order (per epoch) and dropout/masking (per rank)."""
    scaling_mode: Literal["weak", "strong", ""] = ""
    """What a change of worker count keeps: the per-worker batch (weak) or the global batch (strong)."""

    def __post_init__(self):
        check_number("per_worker_batch", self.per_worker_batch, gt=0)
        for name in ("global_batch", "grad_accum", "steps", "epochs", "max_grad_norm"):
            check_number(name, getattr(self, name), gt=0, allow_none=True)
        given = [k for k in ("steps", "epochs", "phases") if getattr(self, k) is not None]
        if not given:
            raise FieldError("steps", "give one of train.steps, train.epochs or train.phases")
        if "epochs" in given and len(given) > 1:
            raise FieldError("epochs", f"give train.epochs alone, not with {given[0] if given[0] != 'epochs' else given[1]}")
        if self.phases is not None and not self.phases:
            raise FieldError("phases", "an empty phase list; give at least one phase or drop the key")


@dataclass(kw_only=True)
class TargetConfig:
    metric: str = "f1"
    """A metric the task produces: f1, em or loss (squad); mlm_acc, eval_loss or loss (mlm)."""
    value: float = 80.0
    """The value to reach, in the metric's scale (F1/EM in percent, mlm_acc a fraction)."""
    stop: bool = False
    """Stop the run at the first evaluation that reaches the target (time-to-target mode)."""

    def __post_init__(self):
        check_number("value", self.value)


@dataclass(kw_only=True)
class EvalConfig:
    every_steps: int | None = 20
    """Evaluate every N optimizer steps (give this or every_samples)."""
    every_samples: int | None = None
    """Evaluate every N training samples instead of every N steps."""
    at_end: bool = True
    """Evaluate after the last step even when the schedule does not fall on it."""
    target: TargetConfig | None = None
    """A metric value to reach; time to target is measured against it."""

    def __post_init__(self):
        check_number("every_steps", self.every_steps, gt=0, allow_none=True)
        check_number("every_samples", self.every_samples, gt=0, allow_none=True)
        if (self.every_steps is None) == (self.every_samples is None):
            raise FieldError("every_steps", "give exactly one of eval.every_steps or eval.every_samples")


@dataclass(kw_only=True)
class OutputConfig:
    dir: str = "runs"
    """Runs are written to DIR/NAME/ (records.csv, checkpoints, job.yaml)."""
    checkpoints_to_keep: int = 2
    """Checkpoints kept per run (Ray's CheckpointConfig num_to_keep)."""
    max_failures: int = 2
    """Worker-group restarts from the latest checkpoint before the run fails (Ray FailureConfig)."""

    def __post_init__(self):
        try:
            object.__setattr__(self, "dir", results_dir(self.dir))
        except ValueError as exc:
            raise FieldError("dir", str(exc)) from None
        check_number("checkpoints_to_keep", self.checkpoints_to_keep, gt=0)
        if self.max_failures < -1:
            raise FieldError("max_failures", f"must be >= 0, or -1 for unlimited, got {self.max_failures}")


@dataclass(kw_only=True, frozen=True)
class Phase:
    """A phase with every default filled in and the batch arithmetic done."""
    index: int
    steps: int | None  # None until the data size is known (train.epochs)
    seq_len: int
    per_worker_batch: int
    grad_accum: int
    global_batch: int
    warmup: float
    lr: float
    """The reference LR for this phase before the LR rule is applied."""
    max_predictions: int = 20
    """MLM: masked positions per sequence at most."""

    @property
    def warmup_arg(self) -> int | float:
        """`warmup` as the schedules take it: >= 1 is a number of steps, < 1 a fraction of the phase."""
        return int(self.warmup) if self.warmup >= 1 else self.warmup


@dataclass(kw_only=True)
class Job:
    name: str
    """Run name: results go to output.dir/NAME/; re-running a name continues it from its last checkpoint."""
    task: Literal["squad", "mlm"] = "squad"
    """squad (BertForQuestionAnswering, F1/EM) or mlm (BertForMaskedLM, masked-LM accuracy)."""
    model: ModelConfig = field(default_factory=ModelConfig)
    """The BERT to train."""
    data: DataConfig
    """Training and held-out data: files, or generated offline (synth)."""
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    """The optimizer and its hyperparameters."""
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    """The LR schedule and how the peak LR follows the global batch."""
    scaling: ScalingConfig = field(default_factory=ScalingConfig)
    """Ray Train workers and what each one holds."""
    train: TrainConfig
    """Batch arithmetic, length, clipping, precision, seed."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """When to evaluate, and the target to reach."""
    output: OutputConfig = field(default_factory=OutputConfig)
    """Where the run is written; checkpoints and restarts."""

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise FieldError("name", f"must be a plain folder name (no '/'), got {self.name!r}")
        self._check_target()
        if self.train.precision == "fp16" and not self.scaling.use_gpu:
            # fp16 needs a GradScaler on CUDA; a CPU run learns that only inside its workers.
            raise FieldError("train.precision", "fp16 needs GPUs (scaling.use_gpu: true); valid on CPU: fp32, bf16")
        phases = self.phases()  # every phase's batch arithmetic must work out
        if self.scaling.elastic:
            self._check_elastic(phases)
        if self.task == "squad":
            self._check_windows(phases)

    @property
    def data_workers(self) -> int:
        """Data-parallel ranks: num_workers (an elastic run's most), or 1 when the run is local
        (num_workers=0)."""
        return max(1, self.scaling.max_workers)

    def _check_elastic(self, widest: list[Phase]) -> None:
        """An elastic run keeps each phase's global batch at every worker count of its range."""
        t, counts = self.train, self.scaling.worker_counts()
        given = [(f"train.phases[{i}]", p.global_batch, p.grad_accum) for i, p in enumerate(t.phases or [])]
        for key, global_batch, grad_accum in [("train", t.global_batch, t.grad_accum), *given]:
            if grad_accum is not None and global_batch is None:
                raise FieldError(f"{key}.grad_accum", f"an elastic run (scaling.num_workers {self.scaling.num_workers}) "
                                                      "keeps the global batch and sets the accumulation for each worker "
                                                      f"count: give {key}.global_batch instead")
        for world in counts:
            for phase, ref in zip(self.phases(world), widest):
                if phase.global_batch != ref.global_batch:  # neither the phase nor the job gives one
                    key = "train" if t.phases is None or t.global_batch is not None else f"train.phases[{phase.index}]"
                    raise FieldError(f"{key}.global_batch",
                                     f"an elastic run (scaling.num_workers {self.scaling.num_workers}) keeps the "
                                     f"global batch fixed: give {key}.global_batch")

    def _check_target(self) -> None:
        target = self.eval.target
        if target is None:
            return
        valid = task_metrics(self.task)
        if target.metric not in valid:
            raise FieldError("eval.target.metric",
                             f"task {self.task!r} does not produce {target.metric!r}; valid: {', '.join(valid)}")

    def _check_windows(self, phases: list[Phase]) -> None:
        # A SQuAD window holds [CLS] question [SEP] context [SEP] and must advance by more than the
        # stride, or the windows would never move through a long context.
        d = self.data
        needed = d.max_query_length + 3 + d.doc_stride + 1
        for p in phases:
            if p.seq_len < needed:
                key = "model.max_seq_length" if self.train.phases is None or self.train.phases[p.index].seq_len is None \
                    else f"train.phases[{p.index}].seq_len"
                raise FieldError(key, f"{p.seq_len} is too short for data.max_query_length {d.max_query_length} + "
                                      f"data.doc_stride {d.doc_stride}: valid: at least {needed}, or lower those")

    def phases(self, world: int | None = None) -> list[Phase]:
        """The resolved phases on `world` data-parallel workers (default `data_workers`; an
        elastic run resolves them again for each worker count); one implicit phase when
        `train.phases` is not given."""
        t, world = self.train, world or self.data_workers
        if t.phases is None:
            return [self._resolve(0, "train", t.steps, None, t.per_worker_batch, t.global_batch,
                                  t.grad_accum, None, None, None, world)]
        phases = [self._resolve(i, f"train.phases[{i}]", p.steps, p.seq_len,
                                p.per_worker_batch or t.per_worker_batch,
                                p.global_batch if (p.global_batch or p.grad_accum) else t.global_batch,
                                p.grad_accum if (p.global_batch or p.grad_accum) else t.grad_accum,
                                p.warmup, p.lr, p.max_predictions, world) for i, p in enumerate(t.phases)]
        total = sum(p.steps for p in phases)
        if t.steps is not None and t.steps != total:
            raise FieldError("train.steps", f"is {t.steps} but the phases add up to {total} steps; "
                                            "make them agree or drop train.steps")
        return phases

    def _resolve(self, index, key, steps, seq_len, pwb, global_batch, grad_accum, warmup, lr,
                 max_predictions, workers) -> Phase:
        per_step = pwb * workers
        if global_batch is not None:
            if global_batch % per_step:
                raise FieldError(f"{key}.global_batch", self._batch_error(global_batch, pwb, workers))
            accum = global_batch // per_step
            if grad_accum is not None and grad_accum != accum:
                raise FieldError(f"{key}.grad_accum", f"{grad_accum} disagrees with global_batch {global_batch} "
                                                      f"= {pwb} x {workers} x {accum}; give one of them")
        else:
            accum = grad_accum or 1
        return Phase(index=index, steps=steps, seq_len=seq_len or self.model.max_seq_length,
                     per_worker_batch=pwb, grad_accum=accum, global_batch=per_step * accum,
                     warmup=self.schedule.warmup if warmup is None else warmup,
                     lr=self.optimizer.lr if lr is None else lr,
                     max_predictions=max_predictions or self.data.max_predictions)

    def _batch_error(self, global_batch: int, pwb: int, workers: int) -> str:
        per_step = pwb * workers
        if not self.scaling.elastic:
            return (f"{global_batch} is not a multiple of per_worker_batch x workers = {pwb} x {workers} = "
                    f"{per_step}; valid: {per_step}, {2 * per_step}, {4 * per_step}, ...")
        every = math.lcm(*(pwb * w for w in self.scaling.worker_counts()))
        return (f"{global_batch} is not a multiple of per_worker_batch x workers = {pwb} x {workers} = {per_step}, "
                f"and an elastic run (scaling.num_workers {self.scaling.num_workers}) keeps it at every worker "
                f"count; valid: multiples of {every} ({every}, {2 * every}, ...), or a narrower range")

    def peak_lr(self, phase: Phase) -> float:
        """The phase's peak LR after the LR rule moves it from the reference batch to its batch."""
        from scaling_study.optim import scale_lr  # torch import only where needed

        ref = self.schedule.reference_batch or phase.global_batch
        return scale_lr(phase.lr, ref, phase.global_batch, self.schedule.lr_rule)


def with_absolute_paths(job: Job, base: Path) -> Job:
    """`job` with its relative file paths taken from `base` (the folder the user launched from).

    Tune runs each trial's driver in its own working directory, and cluster workers run elsewhere
    again: paths are fixed on the driver before anything moves.
    """
    def absolute(p: str | None) -> str | None:
        if p is None or "://" in p or Path(p).is_absolute():
            return p
        return str(base / p)

    model = job.model
    if Path(model.name).parts and (base / model.name).is_dir() and not Path(model.name).is_absolute():
        model = replace(model, name=str(base / model.name))
    data = replace(job.data, train=absolute(job.data.train), dev=absolute(job.data.dev), dir=absolute(job.data.dir))
    output = replace(job.output, dir=absolute(job.output.dir))
    return replace(job, model=model, data=data, output=output)
