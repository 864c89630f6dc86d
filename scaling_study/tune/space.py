"""Search spaces: `search_spaces/*.yaml` -> a checked `SearchSpace` -> Ray Tune's search space.

A search-space file names a base job and the dimensions to sweep::

    name: lamb_lr_batch                  # the sweep's folder name
    base: ../jobs/sweep_base_tiny.yaml   # a job file, relative to this file
    set: {train.steps: 120}              # fixed changes to the base job (dotted keys)
    parameters:                          # the dimensions: any job key, dotted
      optimizer.lr:       {distribution: loguniform, min: 1.0e-4, max: 1.0e-2}
      train.global_batch: {distribution: grid, values: [32, 64, 128]}
      optimizer.name:     {distribution: choice, values: [lamb, lans]}
      schedule.warmup:    {distribution: uniform, min: 0.0, max: 0.2}
      train.seed:         {distribution: randint, min: 0, max: 100}    # max inclusive
    lr_scaling: {rule: sqrt, reference_batch: 32}   # optimizer.lr is the LR at reference_batch
    study: {mode: weak, workers: [1, 2], seeds: [0, 1]}   # optional scaling study
    num_samples: 4
    search: {algorithm: random, seed: 0}            # random | grid | optuna
    scheduler: {name: asha, metric: f1, mode: max, time_attr: samples,
                grace_period: 256, reduction_factor: 3, max_t: 6400}
    max_concurrent_trials: 2
    failure: {max_failures: 1}                      # restarts of a failed trial
    output: {dir: sweeps}                           # Tune's storage_path (a local path or a URI)

Distributions (Ray Tune's own): `grid` runs every value; `choice` samples one value per trial
(under `search.algorithm: grid` it is enumerated like `grid`); `uniform` and `loguniform` sample
floats in [min, max]; `randint` samples integers in [min, max] with **both ends inclusive**, as
W&B's `int_uniform` and Determined's `int` read (Tune's `randint` excludes its upper bound, so
`max + 1` is passed to it).

Trials: Tune repeats the grid (`grid` dimensions x study workers x seeds) `num_samples` times,
sampling the other dimensions afresh each time.

`lr_scaling` sets `schedule.lr_rule` and `schedule.reference_batch` in every trial, so a sweep
over the batch moves the peak LR by the rule (reference default: the base job's global batch).

A scaling study sweeps `scaling.num_workers` (and `train.seed`) as a grid: `weak` keeps each
phase's per-worker batch and accumulation (the global batch grows with the workers); `strong`
keeps the global batch (accumulation, then the micro-batch, shrink; see `study.strong`). Switch
with `--set study.mode=strong`.

Everything is checked by `load_space` before any trial starts, including every grid point (and
the ends of each range) built into a full job.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Callable

from scaling_study.config import Job, Phase, job_from_dict, load_yaml
from scaling_study.config.load import apply_overrides, blame_override, keys_related, parse_override
from scaling_study.config.schema import from_dict
from scaling_study.contract import METRICS, task_metrics
from scaling_study.errors import ConfigError
from scaling_study.tune import study as _study
from scaling_study.tune.space_schema import Dimension, Failure, Output, Scheduler, Search, SpaceFile, Study

DIMENSION_FIELDS = ("distribution", "values", "min", "max")


@dataclass
class SearchSpace:
    """A loaded, fully checked search space. Build it with `load_space`."""
    path: Path
    spec: SpaceFile
    dimensions: dict[str, Dimension]
    base_path: Path
    base_data: dict
    base_job: Job
    scheduler: Scheduler
    """`spec.scheduler` with metric and mode filled in."""
    lr_rule: tuple[str, int] | None
    """(rule, reference_batch) set in every trial, or None to keep the base job's."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def num_samples(self) -> int:
        return self.spec.num_samples

    @property
    def max_concurrent_trials(self) -> int | None:
        return self.spec.max_concurrent_trials

    @property
    def output(self) -> Output:
        """`output.dir`: where Tune keeps the sweep (a local folder or a filesystem URI)."""
        return self.spec.output

    @property
    def failure(self) -> Failure:
        return self.spec.failure

    @property
    def search(self) -> Search:
        return self.spec.search

    @property
    def study(self) -> Study | None:
        return self.spec.study

    @property
    def grid_search(self) -> bool:
        return self.spec.search.algorithm == "grid"

    # -- the search space as Tune sees it -------------------------------------------------

    def axes(self) -> dict[str, list]:
        """The enumerated dimensions (grid; choice under grid search; study workers and seeds)."""
        axes = {k: v for k, d in self.dimensions.items() if (v := d.enumerated(self.grid_search)) is not None}
        return {**axes, **self.study_axes()}

    def study_axes(self) -> dict[str, list]:
        """The scaling study's grid: worker counts and seeds (empty without a study)."""
        study = self.spec.study
        if study is None:
            return {}
        return {_study.WORKERS_KEY: list(study.workers),
                _study.SEED_KEY: list(study.seeds or [self.base_job.train.seed])}

    def param_space(self) -> dict[str, Any]:
        """Tune's `param_space`: flat dotted job keys -> Tune domains / `grid_search` specs."""
        from ray import tune

        space = {key: dim.domain(self.grid_search) for key, dim in self.dimensions.items()}
        return {**space, **{key: tune.grid_search(values) for key, values in self.study_axes().items()}}

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the enumerated dimensions, in Tune's order (last key fastest).

        With sampled dimensions too, each point stands for `num_samples` trials that differ in them.
        """
        axes = self.axes()
        return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]

    def check_points(self) -> list[dict[str, Any]]:
        """Full points (a value for every dimension) that bound the space: each grid point times
        the ends of each sampled range. `load_space` built a job for each; use them wherever every
        trial must be covered (data to prepare, the widest trial to fit on the cluster)."""
        from scaling_study.tune.space_checks import check_points

        return check_points(self)

    def trial_count(self) -> int:
        """How many trials Tune will start: the grid, `num_samples` times."""
        return len(self.grid_points()) * self.num_samples

    # -- one trial ------------------------------------------------------------------------

    def job_for(self, params: dict[str, Any], name: str) -> Job:
        """The job of one trial: base + `set` + `lr_scaling` + `params` + the study's batch rule.

        `params` holds one value per dimension (and per study axis), keyed as in `param_space`.
        Raises a ConfigError naming this file, the dimension to blame and the combination.
        """
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"a trial's name must be a plain folder name (no '/'), got {name!r}")
        params = dict(params)
        self._check_params(params)
        study = {k: params.pop(k) for k in self.study_axes()}
        seed = {_study.SEED_KEY: study[_study.SEED_KEY]} if study else {}
        data = {**self._assemble({**params, **seed}, params, study), "name": name}
        if study:
            swept = {k: v for k, v in params.items() if k in _study.BATCH_KEYS}
            mode = getattr(_study, self.spec.study.mode)
            try:
                data = mode(data, self._reference_phases, study[_study.WORKERS_KEY], swept)
            except _study.StudyError as exc:
                raise ConfigError("study.workers", f"{exc} ({_fmt({**params, **study})})", str(self.path)) from None
        return self._job(data, params, study)

    @cached_property
    def _reference_phases(self) -> list[Phase]:
        """The phases of base + `set` at the base's worker count: the batch a study keeps."""
        data = {**self._assemble({}, {}, {}), "name": self.name}
        return self._job(data, {}, {}).phases()

    def _assemble(self, values: dict, params: dict, study: dict) -> dict:
        """base + `set` + the LR rule + `values`; a key that cannot be set is blamed as in `_job`."""
        try:
            return _study.assemble(self.base_data, self.spec.set, self.lr_rule, values)
        except ConfigError as exc:
            raise self._error(exc, params, study) from None

    def _check_params(self, params: dict) -> None:
        expected = set(self.dimensions) | set(self.study_axes())
        for key in sorted(set(params) ^ expected):
            what = "is not a dimension of this space" if key in params else "has no value"
            raise ConfigError(f"parameters.{key}", f"{what}; dimensions: {', '.join(sorted(expected))}",
                              str(self.path))

    def _job(self, data: dict, params: dict, study: dict) -> Job:
        try:
            return job_from_dict(data, source=str(self.path))
        except ConfigError as exc:
            raise self._error(exc, params, study) from None

    def blame(self, exc: ConfigError, point: dict[str, Any]) -> ConfigError:
        """An error about the job of `point` (as `job_for` takes it) as an error of this file:
        the space key to blame (a dimension, the study, `set` or the base job) and the point."""
        params = dict(point)
        study = {k: params.pop(k) for k in self.study_axes()}
        return self._error(exc, params, study)

    def _error(self, exc: ConfigError, params: dict, study: dict) -> ConfigError:
        """A job's error as this file's: the space key to blame, and the combination."""
        key = self._blame(exc.key, params, study)
        detail = exc.message if key.endswith(exc.key) else f"{exc.key}: {exc.message}"
        return ConfigError(key, f"{detail} ({_fmt({**params, **study})})", str(self.path))

    def _blame(self, job_key: str, params: dict, study: dict) -> str:
        """The space key a job error comes from: a dimension, the study, `set`, or the base job."""
        for key in params:
            if keys_related(job_key, key):
                return f"parameters.{key}"
        if job_key.rsplit(".", 1)[-1] in ("per_worker_batch", "global_batch", "grad_accum"):
            swept = [k for k in params if k in _study.BATCH_KEYS]
            if swept:
                return f"parameters.{swept[0]}"
            if study:
                return "study.workers"
        for key in self.spec.set:
            if keys_related(job_key, key):
                return f"set.{key}"
        return f"base {self.base_path}: {job_key}"

    # -- Ray Tune objects -----------------------------------------------------------------

    def build_scheduler(self, state_path: str):
        """ASHA on the worker-reported clock with its rungs kept in `state_path` (they survive a
        restart of the sweep driver), one per group of `scheduler.group_by`; or FIFO. Metric and
        mode come from `tune_config`."""
        from ray.tune.schedulers import FIFOScheduler

        from scaling_study.tune.asha import PersistentASHA

        s = self.scheduler
        if s.name == "fifo":
            return FIFOScheduler()
        return PersistentASHA(state_path=state_path, group_by=s.group_by, time_attr=s.time_attr, max_t=s.max_t,
                              grace_period=s.grace_period, reduction_factor=s.reduction_factor)

    def build_search_alg(self, max_concurrent: int | None = None):
        """Tune's variant generator (random and grid), or OptunaSearch, running at most
        `max_concurrent` trials at once."""
        seed = self.spec.search.seed
        if self.spec.search.algorithm == "optuna":
            from ray.tune.search import ConcurrencyLimiter
            from ray.tune.search.optuna import OptunaSearch

            searcher = OptunaSearch(seed=seed)
            return ConcurrencyLimiter(searcher, max_concurrent) if max_concurrent else searcher
        from ray.tune.search import BasicVariantGenerator

        return BasicVariantGenerator(random_state=seed, max_concurrent=max_concurrent or 0)

    def tune_config(self, state_path: str, *, max_concurrent_trials: int | None = None):
        """`ray.tune.TuneConfig` with this space's metric, mode, searcher, scheduler and sizes;
        ASHA keeps its rungs in `state_path`. `max_concurrent_trials` (default: the space's) is
        enforced by the search algorithm itself: Tune ignores TuneConfig's for a
        `BasicVariantGenerator` passed in, as every sweep here does."""
        from ray import tune

        limit = max_concurrent_trials or self.max_concurrent_trials
        return tune.TuneConfig(metric=self.scheduler.metric, mode=self.scheduler.mode,
                               search_alg=self.build_search_alg(limit),
                               scheduler=self.build_scheduler(state_path), num_samples=self.num_samples)

    def failure_config(self):
        """`ray.tune.FailureConfig`: how often a failed trial's driver is restarted."""
        from ray import tune

        return tune.FailureConfig(max_failures=self.spec.failure.max_failures)


def load_space(path: str | Path, overrides: list[str] = (), *, data: dict | None = None,
               confine_base: Callable[[Path], None] | None = None) -> SearchSpace:
    """Load and check a search-space file completely; nothing starts before this succeeds.

    `overrides` are `dotted.key=value` items on the space: `study.mode=strong`,
    `set.train.steps=50` (a base-job key under `set`), `parameters.optimizer.lr.max=0.02`.
    An error caused by one names the file and the item (see `config.load.blame_override`).

    `data`: the file's mapping, already read (a file checked as if it were at `path` without
    being written there). `confine_base`: called with the base job's path before anything there
    is looked at; it raises a ConfigError to refuse it (the service holds bases to the project),
    so that an error never tells whether a file it refuses exists.
    """
    from scaling_study.tune import space_checks

    path = Path(path)
    source = str(path)
    overrides = list(overrides)
    data = apply_space_overrides(load_yaml(path) if data is None else data, overrides, source)
    try:
        spec = from_dict(SpaceFile, data, source=source)
        dimensions = {key: _dimension(key, value, source) for key, value in spec.parameters.items()}
        base_path, base_data, base_job = _load_base(path, spec, confine_base)
        space = SearchSpace(path=path, spec=spec, dimensions=dimensions, base_path=base_path,
                            base_data=base_data, base_job=base_job,
                            scheduler=_resolve_scheduler(spec.scheduler, base_job, source),
                            lr_rule=_lr_rule(spec, base_data, base_path))
        space_checks.check(space)
    except ConfigError as exc:
        raise blame_override(exc, overrides) from None
    return space


def is_search_space(data: dict) -> bool:
    """Whether a loaded YAML mapping is a search space (it names a base job) rather than a job."""
    return "base" in data


def apply_space_overrides(data: dict, overrides: list[str], source: str | None = None) -> dict:
    """`--set` items on a space file. Under `set` and `parameters` the keys are dotted job keys,
    so `set.train.steps=5` sets `set["train.steps"]` and `parameters.optimizer.lr.max=0.1`
    sets `max` of the `optimizer.lr` dimension; anything else is an ordinary dotted key."""
    plain = []
    for item in overrides:
        key, value = parse_override(item)
        section, _, rest = key.partition(".")
        if section not in ("set", "parameters") or not rest:
            plain.append(item)
            continue
        data = {**data, section: dict(data.get(section) or {})}
        dim, _, fieldname = rest.rpartition(".")
        if section == "parameters" and fieldname in DIMENSION_FIELDS and dim:
            current = data[section].get(dim)
            data[section][dim] = {**(current if isinstance(current, dict) else {}), fieldname: value}
        else:
            data[section][rest] = value
    return apply_overrides(data, plain, source)


def _dimension(key: str, value: Any, source: str) -> Dimension:
    if not isinstance(value, dict):
        raise ConfigError(f"parameters.{key}", f"expected a mapping like {{distribution: grid, values: [...]}}, "
                                               f"got {value!r}", source)
    return from_dict(Dimension, value, prefix=f"parameters.{key}", source=source)


def _load_base(path: Path, spec: SpaceFile,
               confine_base: Callable[[Path], None] | None = None) -> tuple[Path, dict, Job]:
    base_path = path.parent / spec.base
    if confine_base is not None:
        confine_base(base_path)
    if not base_path.is_file():
        raise ConfigError("base", f"no job file at {base_path} (the path is relative to this file's folder)",
                          str(path))
    data = load_yaml(base_path)
    return base_path, data, job_from_dict(data, source=str(base_path))


def _resolve_scheduler(s: Scheduler, job: Job, source: str) -> Scheduler:
    """Fill in metric (the base's target metric, else the task's first) and mode (its natural one)."""
    valid = task_metrics(job.task)
    metric = s.metric or (job.eval.target.metric if job.eval.target else valid[0])
    if metric not in valid:
        raise ConfigError("scheduler.metric", f"task {job.task!r} of the base job does not report {metric!r}; "
                                              f"valid: {', '.join(valid)}", source)
    natural = METRICS[metric].mode
    if s.mode is not None and s.mode != natural:
        raise ConfigError("scheduler.mode", f"{metric} is better when {'higher' if natural == 'max' else 'lower'}; "
                                            f"mode {s.mode} would keep the worst trials; valid: {natural}", source)
    return replace(s, metric=metric, mode=natural)


def _lr_rule(spec: SpaceFile, base_data: dict, base_path: Path) -> tuple[str, int] | None:
    """(rule, reference batch); the reference defaults to the base job's global batch after `set`."""
    if spec.lr_scaling is None:
        return None
    ref = spec.lr_scaling.reference_batch
    if ref is None:
        data = _study.assemble(base_data, spec.set, None, {})
        ref = job_from_dict(data, source=str(base_path)).phases()[0].global_batch
    return spec.lr_scaling.rule, ref


def _fmt(params: dict) -> str:
    return "trial " + ", ".join(f"{k}={v!r}" for k, v in params.items()) if params else "the base job"
