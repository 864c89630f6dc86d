"""Reading job YAML files (safe loader), `--set` overrides, and writing jobs back out."""
from __future__ import annotations

import copy
import os
import re
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


def parse_override(item: str) -> tuple[str, Any]:
    """`dotted.key=value` -> (key, value parsed as YAML; an empty value is null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(item, "expected --set dotted.key=value", "--set")
    try:
        return key.strip(), (yaml.safe_load(raw) if raw.strip() else None)
    except yaml.YAMLError as exc:
        raise ConfigError(key.strip(), f"the value {raw!r} is not valid YAML ({getattr(exc, 'problem', exc)})",
                          f"--set {item}") from None


def apply_overrides(data: dict, overrides: list[str], source: str | None = None,
                    labels: dict[str, str] | None = None) -> dict:
    """Return a copy of `data` with each `dotted.key=value` applied (value parsed as YAML).

    List items are addressed by index (`train.phases.1.steps=100`). Keys that do not exist are
    still set: the schema check that follows rejects them with the valid keys. An item that
    cannot be applied is a ConfigError from `source` naming the item (see `blame_override`).
    """
    data = copy.deepcopy(data)
    for item in overrides:
        key, value = parse_override(item)
        try:
            set_dotted(data, key, value)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.message, _blamed(source, item, labels)) from None
    return data


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `a.b.c` in `data` to a copy of `value`, creating mappings on the way (list items by
    index: `train.phases.1.lr`). ConfigError (without a source) naming the part that cannot hold
    a key: an index past a list's end, or a key under a plain value's key that is not a mapping."""
    node: Any = data
    parts = key.split(".")
    for i, part in enumerate(parts):
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(".".join(parts[: i + 1]), f"no item {part}: the list has {len(node)} item(s), "
                                                            "addressed by index from 0")
            part = int(part)
        elif not isinstance(node, dict):
            raise ConfigError(".".join(parts[:i]), "is not a mapping; cannot set a key under it")
        if i == len(parts) - 1:
            node[part] = copy.deepcopy(value)
        else:
            if isinstance(node, dict) and not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]


def keys_related(a: str, b: str) -> bool:
    """Whether dotted keys `a` and `b` are the same or one lies under the other; a list item is
    the same key as `train.phases.1` (as `--set` writes it) or `train.phases[1]` (as errors do)."""
    a, b = (re.sub(r"\[(\d+)\]", r".\1", k) for k in (a, b))
    return a == b or a.startswith(b + ".") or b.startswith(a + ".")


def blame_override(exc: ConfigError, overrides: list[str], labels: dict[str, str] | None = None) -> ConfigError:
    """`exc` with its source naming the override that caused it, if one did: the first item of
    `overrides` whose key is `exc.key`, above it or under it. The source then reads `FILE (--set
    ITEM)`; `labels` maps an item to what the user typed instead (`--out DIR` for `output.dir=DIR`)."""
    for item in overrides:
        if keys_related(exc.key, item.partition("=")[0].strip()):
            return ConfigError(exc.key, exc.message, _blamed(exc.source, item, labels))
    return exc


def _blamed(source: str | None, item: str, labels: dict[str, str] | None) -> str:
    said = (labels or {}).get(item, f"--set {item}")
    return f"{source} ({said})" if source else said


def job_from_dict(data: dict, source: str | None = None, overrides: list[str] = (),
                  labels: dict[str, str] | None = None) -> Job:
    """Validate a job mapping (with optional overrides) into a `Job`.

    An error caused by an override names the file and the `--set` item (see `blame_override`).
    """
    overrides = list(overrides)
    merged = apply_overrides(data, overrides, source, labels)
    try:
        return from_dict(Job, merged, source=source)
    except ConfigError as exc:
        raise blame_override(exc, overrides, labels) from None


def load_job(path: str | os.PathLike, overrides: list[str] = (), labels: dict[str, str] | None = None) -> Job:
    """Load and validate a job YAML file; nothing starts before this succeeds. An error caused
    by one of `overrides` names it (or its label, see `blame_override`) after the file."""
    return job_from_dict(load_yaml(path), str(path), overrides, labels)


def dump_job(job: Job, path: "str | os.PathLike | Loc", header: str | None = None) -> "Path | Loc":
    """Write `job` as YAML that `load_job` reads back to an equal `Job`, all at once (a local
    file through a temporary name; a URI, see `storage.Loc`, in one PUT)."""
    text = yaml.safe_dump(to_dict(job), sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    Loc(path).write_text(text)
    return as_path(path)  # as given: a relative path stays relative in what the caller prints
