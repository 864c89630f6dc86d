"""ASHA whose rung decisions survive a restart of the sweep driver.

Ray's `Tuner.restore` does not save scheduler state: a restored sweep would start ASHA with empty
rungs and let every unfinished trial past them. `PersistentASHA` writes its rungs (each
milestone's recorded trial results) and each trial's bracket to a JSON file after every decision,
and reads them back when it is created over an existing file.

References: Li et al. 2018, "A System for Massively Parallel Hyperparameter Tuning" (ASHA).
"""
from __future__ import annotations

import json

from ray.tune.schedulers import ASHAScheduler

from scaling_study.storage import Loc


class PersistentASHA(ASHAScheduler):
    """`ASHAScheduler` plus a state file (`state_path`) it keeps current and restores from."""

    def __init__(self, *, state_path: str, **kwargs):
        super().__init__(**kwargs)
        self._state_path = Loc(state_path)  # a local path or a URI, next to the sweep's results
        self._saved_brackets: dict[str, int] = {}
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
            self._trial_info[trial.trial_id] = self._brackets[idx]

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
        return [[(m, dict(r)) for m, r in b._rungs] for b in self._brackets]

    def _save(self) -> None:
        index = {id(b): i for i, b in enumerate(self._brackets)}
        state = {
            "metric": self._metric, "mode": self._mode, "time_attr": self._time_attr,
            "num_stopped": self._num_stopped,
            "brackets": [[[m, r] for m, r in b._rungs] for b in self._brackets],
            "trial_bracket": {**self._saved_brackets,
                              **{t: index[id(b)] for t, b in self._trial_info.items()}},
        }
        self._state_path.write_text(json.dumps(state, default=float))  # atomic

    def _load(self) -> None:
        state = json.loads(self._state_path.read_text())
        for bracket, rungs in zip(self._brackets, state["brackets"]):
            saved = {float(m): r for m, r in rungs}
            bracket._rungs = [(m, dict(saved.get(float(m), r))) for m, r in bracket._rungs]
        self._saved_brackets = {t: int(i) for t, i in state["trial_bracket"].items()}
        self._num_stopped = int(state.get("num_stopped", 0))
