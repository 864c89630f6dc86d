"""ASHA whose rung decisions survive a restart of the sweep driver.

Ray's `Tuner.restore` does not save scheduler state: a restored sweep would start ASHA with empty
rungs and let every unfinished trial past them. `PersistentASHA` writes its rungs (each
milestone's recorded trial results) and each trial's bracket to a JSON file after every decision,
and reads them back when it is created over an existing file. ASHA's bookkeeping is private to
Ray; `scaling_study.compat` is the one place that reaches it.

References: Li et al. 2018, "A System for Massively Parallel Hyperparameter Tuning" (ASHA).
"""
from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler

from scaling_study import compat
from scaling_study.storage import Loc


class PersistentASHA(ASHAScheduler):
    """`ASHAScheduler` plus a state file (`state_path`) it keeps current and restores from."""

    def __init__(self, *, state_path: str, **kwargs):
        super().__init__(**kwargs)
        self._state_path = Loc(state_path)  # a local path or a URI, next to the sweep's results
        self._saved_brackets: dict[str, int] = {}
        compat.asha_rungs(self)  # a Ray that moved ASHA's bookkeeping fails here, before any trial runs
        if self._state_path.is_file():
            self._load()

    def __setstate__(self, state: dict) -> None:
        # `Tuner.restore` unpickles the scheduler as it was when the sweep started: reload the
        # rungs recorded since then.
        self.__dict__.update(state)
        if self._state_path.is_file():
            self._load()

    # Tune hooks ---------------------------------------------------------------------------
    def on_trial_add(self, tune_controller, trial):
        super().on_trial_add(tune_controller, trial)
        idx = self._saved_brackets.get(trial.trial_id)
        if idx is not None:  # a trial restored from before the restart keeps its bracket
            compat.asha_assign_bracket(self, trial.trial_id, idx)

    def on_trial_result(self, tune_controller, trial, result):
        action = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller, trial, result):
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    # state --------------------------------------------------------------------------------
    def rungs(self) -> list[list[tuple[float, dict]]]:
        """Per bracket: [(milestone, {trial_id: recorded value}), ...] (highest milestone first)."""
        return [[(m, dict(r)) for m, r in bracket] for bracket in compat.asha_rungs(self)]

    def _save(self) -> None:
        state = {
            **compat.asha_settings(self),
            "num_stopped": compat.asha_num_stopped(self),
            "brackets": [[[m, r] for m, r in bracket] for bracket in compat.asha_rungs(self)],
            "trial_bracket": {**self._saved_brackets, **compat.asha_trial_brackets(self)},
        }
        self._state_path.write_text(json.dumps(state, default=float))  # atomic

    def _load(self) -> None:
        state = json.loads(self._state_path.read_text())
        for bracket, saved_rungs in zip(compat.asha_rungs(self), state["brackets"]):
            saved = {float(m): r for m, r in saved_rungs}
            for milestone, recorded in bracket:
                if milestone in saved:
                    recorded.clear()
                    recorded.update(saved[milestone])
        self._saved_brackets = {t: int(i) for t, i in state["trial_bracket"].items()}
        compat.asha_num_stopped(self, int(state.get("num_stopped", 0)))
