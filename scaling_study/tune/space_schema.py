"""The typed sections of a search-space file (format: see `scaling_study.tune.space`).

Each section is a `@dataclass(kw_only=True)` read by `scaling_study.config.schema.from_dict`, so
unknown keys, wrong types and single-field mistakes read exactly as they do for jobs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from scaling_study.config.schema import FieldError, check_choice, check_number
from scaling_study.optim.scaling import LR_RULES
from scaling_study.storage import results_dir
from scaling_study.tune.study import BATCH_KEYS

# Worker-reported attributes that only grow, also across a restore (Tune's own counters restart).
TIME_ATTRS = {"samples": "training samples seen, all workers together",
              "step": "optimizer steps (not comparable across global batches)",
              "train_time_s": "seconds spent training, without evaluation or start-up"}
_RESTARTING = ("training_iteration", "time_total_s", "time_this_iter_s", "timesteps_total")
# A randint over a batch key is checked at each value; beyond this many values only at its ends.
MAX_RANGE_CHECK = 512


@dataclass(kw_only=True)
class Dimension:
    """One swept key: a distribution and its values or its [min, max]."""
    distribution: Literal["choice", "grid", "uniform", "loguniform", "randint"]
    """grid (every value), choice (one sampled per trial), uniform / loguniform (floats), randint
    (integers, both ends inclusive)."""
    values: list[Any] | None = None
    """choice / grid: the values (any YAML value, lists included)."""
    min: int | float | None = None
    """uniform / loguniform / randint: the lower end (inclusive)."""
    max: int | float | None = None
    """uniform / loguniform / randint: the upper end (inclusive, randint included)."""

    def __post_init__(self):
        if self.distribution in ("choice", "grid"):
            return self._check_values()
        if self.values is not None:
            raise FieldError("values", f"{self.distribution} takes min and max, not values")
        for name in ("min", "max"):
            if getattr(self, name) is None:
                raise FieldError(name, f"required for distribution {self.distribution}")
            if self.distribution == "randint" and not isinstance(getattr(self, name), int):
                raise FieldError(name, f"randint takes integers, got {getattr(self, name)!r}")
            check_number(name, getattr(self, name), gt=0 if self.distribution == "loguniform" else None)
        if self.distribution != "randint":  # Tune samples floats: check jobs with floats, so an int key fails now
            self.min, self.max = float(self.min), float(self.max)
        if self.min > self.max:
            raise FieldError("min", f"{self.min} is greater than max {self.max}")

    def _check_values(self) -> None:
        if self.min is not None or self.max is not None:
            raise FieldError("min" if self.min is not None else "max",
                             f"{self.distribution} takes values, not min/max")
        if not self.values:
            raise FieldError("values", f"{self.distribution} needs at least one value, got {self.values!r}")
        seen = [repr(v) for v in self.values]
        dupes = sorted({v for v in seen if seen.count(v) > 1})
        if dupes:
            raise FieldError("values", f"{', '.join(dupes)} given more than once")

    def enumerated(self, grid_search: bool) -> list | None:
        """The values Tune enumerates (grid; choice under grid search); None when sampled."""
        if self.distribution == "grid" or (grid_search and self.distribution == "choice"):
            return list(self.values)
        return None

    def domain(self, grid_search: bool):
        """This dimension as a Ray Tune domain (or a `grid_search` spec)."""
        from ray import tune

        values = self.enumerated(grid_search)
        if values is not None:
            return tune.grid_search(values)
        if self.distribution == "choice":
            return tune.choice(self.values)
        if self.distribution == "randint":
            return tune.randint(self.min, self.max + 1)  # Tune's upper bound is exclusive
        return getattr(tune, self.distribution)(self.min, self.max)

    def check_values(self, key: str) -> list:
        """Values a full check builds jobs for: every listed value, the ends of a range, and
        every integer of a small randint over a batch key (divisibility breaks inside a range)."""
        if self.values is not None:
            return list(self.values)
        if (self.distribution == "randint" and key in BATCH_KEYS
                and self.max - self.min < MAX_RANGE_CHECK):
            return list(range(self.min, self.max + 1))
        return [self.min] if self.min == self.max else [self.min, self.max]


@dataclass(kw_only=True)
class LrScaling:
    rule: str
    """sqrt (LAMB, LANS), linear (Goyal et al.) or none: how the peak LR follows the global batch
    (the rules of `scaling_study.optim.scaling.LR_RULES`)."""
    reference_batch: int | None = None
    """The global batch at which `optimizer.lr` is given (default: the base job's global batch)."""

    def __post_init__(self):
        check_choice("rule", self.rule, LR_RULES, "an LR scaling rule")
        check_number("reference_batch", self.reference_batch, gt=0, allow_none=True)


@dataclass(kw_only=True)
class Study:
    """A scaling study: a grid over `scaling.num_workers` x `train.seed`."""
    mode: Literal["weak", "strong"]
    """weak: per-worker batch fixed, global batch grows; strong: global batch fixed."""
    workers: list[int]
    """Worker counts to run (each >= 1)."""
    seeds: list[int] | None = None
    """Repeats over `train.seed` (default: the base job's seed only)."""

    def __post_init__(self):
        if not self.workers:
            raise FieldError("workers", "needs at least one worker count")
        for name, values in (("workers", self.workers), ("seeds", self.seeds or [])):
            if len(set(values)) != len(values):
                raise FieldError(name, f"has a value more than once: {values}")
        for i, workers in enumerate(self.workers):
            check_number(f"workers[{i}]", workers, ge=1)


@dataclass(kw_only=True)
class Search:
    algorithm: Literal["random", "grid", "optuna"] = "random"
    """random: Tune's variant generator (grids enumerated, the rest sampled); grid: every
    dimension enumerated; optuna: Optuna's TPE (needs `pip install optuna`; no grid dimensions)."""
    seed: int | None = None
    """Seed of the sampler, so a sweep draws the same trials again."""


@dataclass(kw_only=True)
class Scheduler:
    name: Literal["asha", "fifo"] = "fifo"
    """asha: stop weak trials early (successive halving); fifo: run every trial to the end."""
    metric: str | None = None
    """What is compared: f1, em, loss (squad) or mlm_acc, loss (mlm); default: the target's metric."""
    mode: Literal["max", "min"] | None = None
    """Default: max for f1/em/mlm_acc, min for loss."""
    time_attr: str = "samples"
    """ASHA's clock: a monotonic, worker-reported attribute (samples, step, train_time_s)."""
    grace_period: int | float | None = None
    """ASHA: a trial runs at least this long (in time_attr units) before it can be stopped."""
    reduction_factor: float = 4.0
    """ASHA: keep the top 1/reduction_factor at each rung."""
    max_t: int | float | None = None
    """ASHA: the last rung; trials stop when time_attr reaches it."""
    group_by: list[str] = field(default_factory=list)
    """ASHA: swept keys (as under `parameters`, or scaling.num_workers / train.seed of a study)
    whose values split the trials into groups, each with its own ASHA: a trial competes only with
    trials that share those values (e.g. [train.global_batch] in a critical-batch study, where a
    rung would otherwise compare batch 16 with batch 512 at the same samples). Empty: one ASHA."""

    def __post_init__(self):
        if self.time_attr in _RESTARTING:
            raise FieldError("time_attr", f"{self.time_attr!r} is counted by Tune and restarts at 1 when a trial "
                                          f"is resumed, so ASHA would compare runs on a clock that jumps back; "
                                          f"valid: {', '.join(TIME_ATTRS)}")
        if self.time_attr not in TIME_ATTRS:
            raise FieldError("time_attr", f"{self.time_attr!r} is not reported by the workers; valid: "
                             + "; ".join(f"{k} ({v})" for k, v in TIME_ATTRS.items()))
        dupes = sorted({key for key in self.group_by if self.group_by.count(key) > 1})
        if dupes:
            raise FieldError("group_by", f"{', '.join(dupes)} given more than once")
        if self.name == "fifo":
            for key in ("grace_period", "max_t", "group_by"):
                if getattr(self, key) not in (None, []):
                    raise FieldError(key, "applies to name: asha only (this scheduler is fifo)")
            return
        for key in ("grace_period", "max_t"):
            if getattr(self, key) is None:
                raise FieldError(key, f"ASHA needs a value > 0 (in {self.time_attr}), got None")
            check_number(key, getattr(self, key), gt=0)
        if self.grace_period > self.max_t:
            raise FieldError("grace_period", f"{self.grace_period} is greater than max_t {self.max_t}")
        check_number("reduction_factor", self.reduction_factor, gt=1)


@dataclass(kw_only=True)
class Failure:
    max_failures: int = 0
    """Restarts of a failed trial (Tune's FailureConfig); -1: unlimited."""

    def __post_init__(self):
        if self.max_failures < -1:  # -1 is a sentinel, not a bound: say so rather than ">= -1"
            raise FieldError("max_failures", f"must be >= 0, or -1 for unlimited, got {self.max_failures}")


@dataclass(kw_only=True)
class Output:
    dir: str = "sweeps"
    """Tune's storage_path: a folder every node can reach (see scaling_study.storage)."""
    keep_checkpoints: Literal["best", "all", "none"] = "best"
    """Checkpoints left once a trial is done or stopped early (running and errored trials keep
    theirs for --resume): best keeps the last one of the best trial by scheduler.metric, all
    keeps every trial's (output.checkpoints_to_keep each), none keeps none."""

    def __post_init__(self):
        try:
            self.dir = results_dir(self.dir)
        except ValueError as exc:
            raise FieldError("dir", str(exc)) from None


@dataclass(kw_only=True)
class SpaceFile:
    """A search-space file as written (the `parameters` are parsed into `Dimension`s apart)."""
    name: str
    """The sweep's folder name under output.dir."""
    base: str
    """The base job file, relative to this file."""
    set: dict[str, Any] = field(default_factory=dict)
    """Fixed overrides of the base job, as dotted keys."""
    parameters: dict[str, Any] = field(default_factory=dict)
    """The dimensions: a dotted job key -> its distribution."""
    lr_scaling: LrScaling | None = None
    """Sets schedule.lr_rule and reference_batch in every trial, so that a batch sweep moves the LR."""
    study: Study | None = None
    """A scaling study over worker counts and seeds."""
    num_samples: int = 1
    """Times Tune repeats the grid, sampling the other dimensions afresh."""
    search: Search = field(default_factory=Search)
    """How trials are drawn."""
    scheduler: Scheduler = field(default_factory=Scheduler)
    """Which trials stop early (ASHA), on what metric."""
    max_concurrent_trials: int | None = None
    """Trials at once at most (default: as many as the cluster holds for the widest trial)."""
    failure: Failure = field(default_factory=Failure)
    """What happens to a failed trial."""
    output: Output = field(default_factory=Output)
    """Where the sweep is written."""

    def __post_init__(self):
        if not self.name or "/" in self.name or self.name.startswith("."):
            raise FieldError("name", f"must be a plain folder name (no '/'), got {self.name!r}")
        check_number("num_samples", self.num_samples, ge=1)
        check_number("max_concurrent_trials", self.max_concurrent_trials, ge=1, allow_none=True)
        if not self.parameters and self.study is None:
            raise FieldError("parameters", "no dimensions to sweep; give parameters, a study, or both")
