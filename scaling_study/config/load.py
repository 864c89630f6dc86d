"""Reading job YAML files (safe loader, no aliases), `--set` overrides, and writing jobs back out."""
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


MAX_YAML_DEPTH = 32
"""How deeply a YAML file may nest (a search space needs 4 levels; the composer recurses once per level)."""


class SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without aliases and with a bounded depth: every YAML the project reads
    (jobs, spaces, `--set` values, a job found in a results folder, an upload to the service) may
    come from someone else, and a few hundred bytes of nested aliases expand to gigabytes. No
    shipped file uses aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not accepted; write the value out",
                                              self.peek_event().start_mark)
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_YAML_DEPTH} levels deep",
                                                  self.peek_event().start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Dumper(yaml.SafeDumper):
    """The safe dumper writing a value seen twice out twice: `SafeLoader` reads no aliases."""

    def ignore_aliases(self, data) -> bool:
        return True


def parse_yaml(text: str) -> Any:
    """`text` read with `SafeLoader`. Raises ValueError saying where and what is wrong (`line L,
    column C not valid YAML: PROBLEM`), for a value the loader cannot build too."""
    try:
        return yaml.load(text, Loader=SafeLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1} " if mark else ""
        raise ValueError(f"{where}not valid YAML: {getattr(exc, 'problem', None) or exc}") from None
    except ValueError as exc:  # e.g. an integer of 5,000 digits
        raise ValueError(f"not valid YAML: {exc}") from None


def load_yaml(path: str | os.PathLike) -> dict:
    """Read a YAML mapping with `SafeLoader`; errors name the file and the line."""
    path = as_path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        data = parse_yaml(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise UserError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("<top>", f"expected a mapping of keys, got {type(data).__name__}", str(path))
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """`dotted.key=value` -> (key, value parsed as YAML; an empty value is null)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(item, "expected --set dotted.key=value", "--set")
    try:
        return key.strip(), (parse_yaml(raw) if raw.strip() else None)
    except ValueError as exc:
        raise ConfigError(key.strip(), f"the value {raw!r} is not valid YAML ({exc})", f"--set {item}") from None


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
    text = yaml.dump(to_dict(job), Dumper=_Dumper, sort_keys=False, default_flow_style=False)
    if header:
        text = "".join(f"# {line}\n" for line in header.splitlines()) + text
    Loc(path).write_text(text)
    return as_path(path)  # as given: a relative path stays relative in what the caller prints
