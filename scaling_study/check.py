"""`scaling-study check FILE...`: every check of jobs and search spaces that needs no cluster.

A file is loaded as `run` or `sweep` would load it (with the same `--set` items) and then checked
as far as this machine can tell without Ray: the schema and every field's bounds, the optimizer
and schedule built from their names and arguments, a local model folder, data files that must
exist (or a folder generated data can be written to), the workers' GPU resources, a local-mode
job's GPU (it trains on this machine), and the output folder. A search space is
checked at every combination `sweep` would check (see `SearchSpace.check_points`). Reachability
of an object store and the cluster's resources are left to `run` / `sweep`, which check them
before any worker starts. Ray is not imported.

Exit status 0 when every file passes, 2 otherwise: fit for CI.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from scaling_study.errors import ConfigError, UserError


def register(sub) -> None:
    p = sub.add_parser("check", help="check jobs and search spaces without a cluster (exit 0 when all pass)",
                       description="Check each FILE (a job or a search space, told apart by its content) with "
                                   "every check that needs no cluster, without starting Ray. Prints OK or the "
                                   "error per file; exit status 0 when all pass, 2 otherwise.")
    p.add_argument("files", nargs="+", metavar="FILE", help="jobs/*.yaml or search_spaces/*.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of every FILE, as `run` and `sweep` take it (repeatable)")
    p.set_defaults(func=_check)


def _check(args) -> int:
    failed = 0
    for path in args.files:
        try:
            print(f"OK {path} ({check_file(path, args.overrides)})", flush=True)
        except UserError as exc:
            failed += 1
            print(f"error: {exc}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {len(args.files)} file(s) failed the check", file=sys.stderr)
    return 2 if failed else 0


def check_file(path: str | os.PathLike, overrides: list[str] = ()) -> str:
    """Check a job or a search space completely (UserError on the first fault); return what it is."""
    from scaling_study.config import load_yaml
    from scaling_study.tune.space import is_search_space

    if is_search_space(load_yaml(path)):
        space, points = check_space(path, overrides)
        return (f"search space: {space.trial_count()} trials, {len(points)} combinations checked, "
                f"base job {os.path.normpath(space.base_path)}")
    job = check_job(path, overrides)
    s = job.scaling
    workers = (f"{s.min_workers} to {s.max_workers} workers (elastic)" if s.elastic
               else f"{s.num_workers} worker(s)" if s.num_workers else "in the driver process")
    return f"job: {job.task}, model {job.model.name}, {job.optimizer.name}, {len(job.phases())} phase(s), {workers}"


def check_job(path: str | os.PathLike, overrides: list[str] = (), labels: dict[str, str] | None = None):
    """Load the job at `path` (see `config.load_job`) and run every check it needs no cluster
    for; errors name the file and, when one caused it, the override. Returns the `Job`."""
    from scaling_study.config import load_job
    from scaling_study.config.load import blame_override

    from scaling_study.train.devices import check_local_device

    job = load_job(path, overrides, labels)
    try:
        check_here(job, str(path))
        check_local_device(job, str(path))  # local mode trains right here: its GPU must be here
        check_output_dir(job.output.dir, "output.dir", str(path))
    except ConfigError as exc:
        raise blame_override(exc, list(overrides), labels) from None
    return job


def check_space(path: str | os.PathLike, overrides: list[str] = ()):
    """Load the search space at `path` (see `tune.space.load_space`, which builds the job of
    every combination) and run `check_here` on each; returns (the space, the combinations)."""
    from scaling_study.config.load import blame_override
    from scaling_study.tune.space import load_space

    space = load_space(path, overrides)
    source = str(space.path)
    points = space.check_points()
    seen: set[str] = set()
    try:
        check_output_dir(space.output.dir, "output.dir", source)
        for point in points:
            job = space.job_for(point, name="check")
            key = _checked_part(job)
            if key not in seen:
                seen.add(key)
                try:
                    check_here(job, source)
                except ConfigError as exc:
                    raise space.blame(exc, point) from None
    except ConfigError as exc:
        raise blame_override(exc, list(overrides)) from None
    return space, points


def _checked_part(job) -> str:
    """What `check_here` reads of a job: jobs that differ only elsewhere (seeds, LRs, batches)
    are checked once."""
    from scaling_study.config.schema import to_dict

    o = job.optimizer
    return json.dumps([job.task, job.model.name, o.name, o.weight_decay, o.args, to_dict(job.schedule),
                       [(p.steps, p.warmup_arg) for p in job.phases()], to_dict(job.data), to_dict(job.scaling)],
                      sort_keys=True, default=str)


def check_here(job, source: str | None = None) -> None:
    """Checks of a loaded job that need this machine but no cluster: the components (model
    folder, optimizer, schedule; see `config.components`) and the data. Relative paths are
    taken from the current directory, as `run` and `sweep` take them."""
    from scaling_study.config.components import check_components

    check_components(job, source)
    check_data(job, source)


def check_data(job, source: str | None = None) -> None:
    """Raise ConfigError unless the job's data files exist, or generated data (`data.synth`)
    can be written under `data.dir`."""
    from scaling_study.train.tasks import resolve_data_files

    if job.data.train is None:
        check_writable(job.data.dir, "data.dir", source)
        return
    try:
        resolve_data_files(job, generate=False)
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.message, source) from None


def check_output_dir(value: str, key: str, source: str | None = None) -> None:
    """A local output folder must be creatable here; a URI was checked for its form when loaded
    (whether its store answers is checked by `run` and `sweep` before Ray starts)."""
    from scaling_study.storage import is_uri

    if not is_uri(value):
        check_writable(value, key, source)


def check_writable(folder: str, key: str, source: str | None = None) -> None:
    """Raise ConfigError(`key`) unless `folder` is, or can be made, a folder this user writes to."""
    path = Path(folder).expanduser().absolute()
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(key, f"{folder!r}: {existing} is a file, not a folder", source)
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "is not writable" if existing == path else f"cannot be created: {existing} is not writable"
        raise ConfigError(key, f"{folder!r} {what} by this user", source)
