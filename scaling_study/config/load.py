"""Reading job YAML files (safe loader), `--set` overrides, and writing jobs back out."""
from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from scaling_study.config.job import Job
from scaling_study.config.schema import from_dict, to_dict
from scaling_study.errors import ConfigError, UserError
from scaling_study.storage import Loc, as_path


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with the safe loader; errors name the file and the line."""
    path = as_path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise UserError(f"{path}:{where} not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigError("<top>", f"expected a mapping of keys, got {type(data).__name__}", str(path))
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Return a copy of `data` with each `dotted.key=value` applied (value parsed as YAML).

    List items are addressed by index (`train.phases.1.steps=100`). Keys that do not exist are
    still set: the schema check that follows rejects them with the valid keys.
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(item, "expected --set dotted.key=value", "--set")
        value = yaml.safe_load(raw) if raw.strip() else None
        _set_path(data, key.strip().split("."), value, item)
    return data


def _set_path(node: Any, parts: list[str], value: Any, item: str) -> None:
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(".".join(parts[: i + 1]), f"index out of range; the list has {len(node)} items", f"--set {item}")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(".".join(parts[:i]), "is not a mapping; cannot set a key under it", f"--set {item}")
        if last:
            node[part] = value
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]


def job_from_dict(data: dict, source: str | None = None, overrides: list[str] = ()) -> Job:
    """Validate a job mapping (with optional overrides) into a `Job`.

    An error caused by an override names the `--set` item rather than the file.
    """
    merged = apply_overrides(data, list(overrides))
    try:
        return from_dict(Job, merged, source=source)
    except ConfigError as exc:
        for item in overrides:
            key = item.partition("=")[0].strip()
            if exc.key == key or exc.key.startswith(key + ".") or key.startswith(exc.key + "."):
                raise ConfigError(exc.key, exc.message, f"--set {item}") from None
        raise


def load_job(path: str | os.PathLike, overrides: list[str] = ()) -> Job:
    """Load and validate a job YAML file; nothing starts before this succeeds."""
    return job_from_dict(load_yaml(path), str(path), overrides)


def dump_job(job: Job, path: "str | os.PathLike | Loc", header: str | None = None) -> "Path | Loc":
    """Write `job` as YAML that `load_job` reads back to an equal `Job`, all at once (a local
    file through a temporary name; a URI, see `storage.Loc`, in one PUT)."""
    text = yaml.safe_dump(to_dict(job), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    Loc(path).write_text(text)
    return as_path(path)  # as given: a relative path stays relative in what the caller prints
