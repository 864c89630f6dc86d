"""ASHA whose rung decisions survive a restart of the sweep driver, optionally one ASHA per group.

Ray's `Tuner.restore` does not save scheduler state: a restored sweep would start ASHA with empty
rungs and let every unfinished trial past them. `PersistentASHA` writes its rungs (each
milestone's recorded trial results) and each trial's bracket to a JSON file after every decision,
and reads them back when it is created over an existing file. ASHA's bookkeeping is private to
Ray; `scaling_study.compat` is the one place that reaches it.

Groups (`scheduler.group_by`): a rung at N samples compares a trial at batch 16 (many steps) with
one at batch 512 (few steps), so one ASHA over a batch sweep always cuts the large batches. With
`group_by` keys, each distinct combination of their values gets its own Ray `ASHAScheduler` (same
settings), created when the group's first trial is added: trials compete only within their group.

The state file (`asha_state.json`), owned here::

    {"metric": "f1", "mode": "max", "time_attr": "samples", "group_by": ["train.global_batch"],
     "groups": {"train.global_batch=64": {"num_stopped": 1, "brackets": [[[milestone, {trial: value}], ...]],
                                          "trial_bracket": {trial: bracket index}}, ...}}

Without groups the one group's label is "". A file without "groups" (written before groups
existed) is that one group: its "num_stopped", "brackets" and "trial_bracket" sit at the top.

References: Li et al. 2018, "A System for Massively Parallel Hyperparameter Tuning" (ASHA).
"""
from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from scaling_study import compat
from scaling_study.errors import UserError
from scaling_study.storage import Loc

ALL = ""
"""The label of the one group when there is no `group_by`."""


def group_label(group_by: Sequence[str], config: Mapping[str, Any]) -> str:
    """The group of a trial with this `config` (flat dotted keys, as in Tune's `param_space`),
    e.g. "train.global_batch=64, optimizer.name=lamb"; `ALL` without `group_by`."""
    missing = [key for key in group_by if key not in config]
    if missing:
        raise ValueError(f"scheduler.group_by: a trial's config has no {', '.join(missing)} "
                         f"(its keys: {', '.join(sorted(config)) or 'none'})")
    return ", ".join(f"{key}={config[key]}" for key in group_by)


def state_groups(state: Mapping[str, Any]) -> dict[str, dict]:
    """Each group's {"num_stopped", "brackets", "trial_bracket"} in a loaded state file, by label;
    a file from before groups is the one group `ALL`."""
    if "groups" in state:
        return {label: dict(group) for label, group in state["groups"].items()}
    return {ALL: {key: state[key] for key in ("num_stopped", "brackets", "trial_bracket") if key in state}}


class PersistentASHA(FIFOScheduler):
    """Ray's `ASHAScheduler` per group of trials (one group without `group_by`), with a state
    file (`state_path`) it keeps current and restores from. `asha` are ASHAScheduler's arguments
    (time_attr, max_t, grace_period, reduction_factor), the same for every group.

    A FIFOScheduler because ASHAScheduler is one: trials start in the order Tune adds them
    (`choose_trial_to_run`); every other hook goes to the trial's group's ASHAScheduler.
    """

    def __init__(self, *, state_path: str, group_by: Sequence[str] = (), metric: str | None = None,
                 mode: str | None = None, **asha):
        super().__init__()
        self._state_path = Loc(state_path)  # a local path or a URI, next to the sweep's results
        self._group_by = list(group_by)
        self._asha = asha
        self._metric, self._mode = metric, mode
        self._groups: dict[str, ASHAScheduler] = {}
        self._trial_group: dict[str, str] = {}  # trials added and not yet completed or removed
        self._saved_brackets: dict[str, dict[str, int]] = {}  # per group: brackets read from the file
        probe = self._new_asha()  # bad settings, or a Ray that moved ASHA's bookkeeping, fail here
        compat.asha_rungs(probe)
        self._time_attr = compat.asha_settings(probe)["time_attr"]
        if self._state_path.is_file():
            self._load()

    def __setstate__(self, state: dict) -> None:
        # `Tuner.restore` unpickles the scheduler as it was when the sweep started: reload the
        # rungs recorded since then.
        if "_groups" not in state:
            state = _from_ungrouped_pickle(state)
        self.__dict__.update(state)
        if self._state_path.is_file():
            self._load()

    # Tune hooks ---------------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        """As ASHAScheduler's: `TuneConfig`'s metric and mode, unless given to the constructor."""
        if (self._metric and metric) or (self._mode and mode):
            return False
        self._metric, self._mode = self._metric or metric, self._mode or mode
        for asha in self._groups.values():
            asha.set_search_properties(metric, mode, **spec)
        return True

    def on_trial_add(self, tune_controller, trial):
        label = group_label(self._group_by, trial.config) if self._group_by else ALL
        asha = self._group(label)
        asha.on_trial_add(tune_controller, trial)
        self._trial_group[trial.trial_id] = label
        idx = self._saved_brackets.get(label, {}).get(trial.trial_id)
        if idx is not None:  # a trial restored from before the restart keeps its bracket
            compat.asha_assign_bracket(asha, trial.trial_id, idx)

    def on_trial_result(self, tune_controller, trial, result):
        action = self._of(trial).on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        self._of(trial).on_trial_complete(tune_controller, trial, result)
        del self._trial_group[trial.trial_id]
        self._save()

    def on_trial_error(self, tune_controller, trial):
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_remove(self, tune_controller, trial):
        self._of(trial).on_trial_remove(tune_controller, trial)
        del self._trial_group[trial.trial_id]

    def debug_string(self) -> str:
        stopped = sum(compat.asha_num_stopped(asha) for asha in self._groups.values())
        by = f" per {', '.join(self._group_by)} ({len(self._groups)} groups)" if self._group_by else ""
        lines = [f"Using AsyncHyperBand{by}: num_stopped={stopped}"]
        for label, asha in self._groups.items():
            body = asha.debug_string().split("\n", 1)[-1]  # its brackets, without its own header
            lines.append(f"{label}: {body}" if label else body)
        return "\n".join(lines)

    # groups -------------------------------------------------------------------------------
    def _new_asha(self) -> ASHAScheduler:
        asha = ASHAScheduler(**self._asha)
        asha.set_search_properties(self._metric, self._mode)  # as Tune would have set them
        return asha

    def _group(self, label: str) -> ASHAScheduler:
        if label not in self._groups:
            self._groups[label] = self._new_asha()
        return self._groups[label]

    def _of(self, trial) -> ASHAScheduler:
        return self._groups[self._trial_group[trial.trial_id]]

    def rungs(self) -> dict[str, list[list[tuple[float, dict]]]]:
        """Per group label, per bracket: [(milestone, {trial_id: recorded value}), ...] (highest
        milestone first)."""
        return {label: [[(m, dict(r)) for m, r in bracket] for bracket in compat.asha_rungs(asha)]
                for label, asha in self._groups.items()}

    # state --------------------------------------------------------------------------------
    def _save(self) -> None:
        groups = {label: {"num_stopped": compat.asha_num_stopped(asha),
                          "brackets": [[[m, r] for m, r in bracket] for bracket in compat.asha_rungs(asha)],
                          "trial_bracket": {**self._saved_brackets.get(label, {}),
                                            **compat.asha_trial_brackets(asha)}}
                  for label, asha in self._groups.items()}
        state = {"metric": self._metric, "mode": self._mode, "time_attr": self._time_attr,
                 "group_by": self._group_by, "groups": groups}
        self._state_path.write_text(json.dumps(state, default=float))  # atomic

    def _load(self) -> None:
        state = json.loads(self._state_path.read_text())
        if state.get("group_by", []) != self._group_by:
            raise UserError(f"{self._state_path}: ASHA's rungs there are grouped by "
                            f"{state.get('group_by') or 'nothing'}, this sweep's scheduler.group_by is "
                            f"{self._group_by or 'empty'}; resume with the same group_by, or start a new sweep")
        for label, saved in state_groups(state).items():
            asha = self._group(label)
            _restore_rungs(asha, saved.get("brackets", []))
            compat.asha_num_stopped(asha, int(saved.get("num_stopped", 0)))
            self._saved_brackets[label] = {t: int(i) for t, i in saved.get("trial_bracket", {}).items()}


def _restore_rungs(asha: ASHAScheduler, saved_brackets: list) -> None:
    """Fill `asha`'s rungs with the saved ones at the same milestones."""
    for bracket, saved_rungs in zip(compat.asha_rungs(asha), saved_brackets):
        saved = {float(m): r for m, r in saved_rungs}
        for milestone, recorded in bracket:
            if milestone in saved:
                recorded.clear()
                recorded.update(saved[milestone])


def _from_ungrouped_pickle(state: dict) -> dict:
    """A `PersistentASHA` pickled before groups was itself an ASHAScheduler (a sweep started on
    an older version and resumed on this one): its state becomes the one group `ALL`."""
    ours = {"_state_path", "_saved_brackets"}
    asha = ASHAScheduler.__new__(ASHAScheduler)
    asha.__dict__.update({k: v for k, v in state.items() if k not in ours})  # as unpickling it would
    settings = compat.asha_settings(asha)
    # No settings to build another group from: without group_by there is none to build.
    return {"_state_path": state["_state_path"], "_group_by": [], "_asha": None, "_time_attr": settings["time_attr"],
            "_metric": settings["metric"], "_mode": settings["mode"], "_groups": {ALL: asha},
            "_trial_group": {t: ALL for t in compat.asha_trial_brackets(asha)},
            "_saved_brackets": {ALL: dict(state.get("_saved_brackets", {}))}}
