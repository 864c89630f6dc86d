"""Comparing studies: each study's settings as flat `key: value` text, so that a page can show
them side by side and keep only the keys whose values differ.

A study's settings are its job (a sweep's first trial's job, with each swept key replaced by the
values the sweep gave it), its scheduler and its trial count.
"""
from __future__ import annotations

import json

import yaml

from scaling_study.service import trial_files
from scaling_study.service.study import Study

MAX_STUDIES = 20
"""At most this many studies in one comparison."""
_NOT_SETTINGS = ("name", "output.dir")  # differ between any two studies and say nothing of the setting


def flatten(data, prefix: str = "") -> dict[str, str]:
    """Nested mappings as dotted keys; other values as compact text (lists as JSON)."""
    if isinstance(data, dict):
        out: dict[str, str] = {}
        for k, v in data.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    if isinstance(data, (list, tuple)):
        return {prefix: json.dumps(data, default=str)}
    return {prefix: "" if data is None else str(data)}


def _job(study: Study) -> dict:
    with study.lock:
        first = next((t.trial_id for t in study.trials.values() if len(t.records)), None) \
            or next(iter(study.trials), None)
    if first is None:
        return {}
    try:
        text = trial_files.job_text(study, first)
        data = yaml.safe_load(text) if text else {}
    except (yaml.YAMLError, OSError):
        return {}
    return data if isinstance(data, dict) else {}


def settings(study: Study) -> dict[str, str]:
    """The study's settings, `{dotted key: value text}`, sorted by key."""
    out = {k: v for k, v in flatten(_job(study)).items() if k not in _NOT_SETTINGS}
    with study.lock:
        swept: dict[str, set] = {}
        for t in study.trials.values():
            for k, v in (t.params or {}).items():
                swept.setdefault(k, set()).add(json.dumps(v, default=str))
        counts = study.counts()
    for key, values in swept.items():
        out[key] = "swept: " + ", ".join(sorted(str(json.loads(v)) for v in values))
    out.update({f"scheduler.{k}": "" if v is None else str(v) for k, v in study.scheduler().items()})
    out["trials"] = str(sum(counts.values()))
    return dict(sorted(out.items()))


def differing(all_settings: list[dict[str, str]]) -> list[str]:
    """The keys whose values are not the same in every study (a key one study lacks differs)."""
    keys = sorted(set().union(*all_settings)) if all_settings else []
    return [k for k in keys if len({s.get(k) for s in all_settings}) > 1]
