"""Load and check the records a report is built from.

The records table is the contract between training and reports (DESIGN.md, "Records"): one row
per evaluation of a run. A report reads any mix of run directories (``records.csv``), sweep
directories (``records.csv`` plus ``trials.csv``) and single CSV/Parquet files, and stacks them
into one table with two columns added:

- ``source``: the file a row came from, so that errors and notes can name it;
- ``run``: a label unique per run, the key every figure groups by. It is the trial id where one is
  set, else the run id, prefixed by the source where two sources reuse a label. A user table
  without ``run_id`` is read as one run per distinct combination of its configuration columns.

Nothing here computes a figure; ``Needs`` states which columns a figure reads, so that a figure
whose inputs are absent can be skipped with a note naming them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from scaling_study.contract import (
    BOOL_COLUMNS, CONFIG_COLUMNS, INT_COLUMNS, NUMERIC_COLUMNS, PROGRESS_COLUMNS, STRING_COLUMNS,
)
from scaling_study.errors import UserError
from scaling_study.layout import RECORDS, RECORDS_PARQUET, TRIALS_DIR, TRIALS_FILE
from scaling_study.storage import Loc, as_path, read_csv, read_parquet

RECORD_FILES = (RECORDS, RECORDS_PARQUET)  # a results directory's records, in the order they are looked for

# Column types and meanings are the contract's (scaling_study.contract); `status` and
# `stopped_early` come from a sweep's trials.csv.
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no", ""}


class MissingColumns(UserError):
    """A figure cannot be drawn: the named sources lack the columns it reads."""

    def __init__(self, figure: str, missing: str, sources: list[str]):
        self.figure, self.missing, self.sources = figure, missing, sources
        where = ", ".join(sources) if sources else "the records"
        super().__init__(f"{where}: {figure} needs {missing}")


@dataclass(frozen=True)
class Needs:
    """The columns a figure reads: all of `columns`, plus one full set out of `any_of` (if given).

    A column counts as present when it exists and holds at least one value.
    """

    figure: str
    columns: tuple[str, ...] = ()
    any_of: tuple[tuple[str, ...], ...] = ()

    def missing(self, df: pd.DataFrame) -> str | None:
        """Describe what `df` lacks for this figure, or None when it has everything."""
        have = {c for c in df.columns if df[c].notna().any()}
        parts = []
        absent = [c for c in self.columns if c not in have]
        if absent:
            parts.append(f"column{'s' if len(absent) > 1 else ''} {', '.join(absent)}")
        if self.any_of and not any(set(alt) <= have for alt in self.any_of):
            parts.append("either " + " or ".join("+".join(alt) for alt in self.any_of))
        return "; and ".join(parts) or None

    def check(self, df: pd.DataFrame) -> None:
        """Raise MissingColumns (a UserError naming the files) unless `df` can feed the figure."""
        missing = self.missing(df)
        if missing:
            raise MissingColumns(self.figure, missing, _sources(df))

    def usable(self, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
        """Keep the rows of sources that have this figure's columns; say which were left out."""
        if "source" not in df.columns:
            return df, []
        keep, notes = [], []
        for source, rows in df.groupby("source", sort=False):
            missing = self.missing(rows)
            if missing:
                notes.append(f"{source} left out of {self.figure}: it lacks {missing}")
            else:
                keep.append(source)
        return df[df["source"].isin(keep)], notes


@dataclass(frozen=True)
class Results:
    """What a report reads: evaluation rows of every run and, from sweep dirs, the trials tables."""

    records: pd.DataFrame
    trials: pd.DataFrame | None
    sources: tuple[str, ...]


def load_results(paths: list[str | Path]) -> Results:
    """Read run dirs, sweep dirs and CSV/Parquet files into one checked records table.

    Raises UserError for a path that does not exist, a directory without records, an unreadable
    or empty table, or a column that should be numeric and is not.
    """
    if not paths:
        raise UserError("no results given: pass a run dir, a sweep dir or a records CSV/Parquet file")
    records, trials = [], []
    for path in map(as_path, paths):  # local paths, or URIs of results on an object store
        records_file, trials_file = _locate(path)
        if records_file is None:  # a sweep not gathered yet: its trials' own records
            records.append(normalize(_ungathered(path), str(path / TRIALS_DIR)))
            continue
        records.append(normalize(read_table(records_file), str(records_file)))
        if trials_file is not None:
            trials.append(normalize(read_table(trials_file), str(trials_file)))
    table = assign_runs(pd.concat(records, ignore_index=True))
    trials_table = pd.concat(trials, ignore_index=True) if trials else None
    return Results(table, trials_table, tuple(table["source"].unique()))


def _locate(path: Path | Loc) -> tuple[Path | Loc | None, Path | Loc | None]:
    """Return (records file, trials file or None) for a file, run dir or sweep dir; (None, None)
    for a sweep dir whose driver has not gathered its trials (running, or killed)."""
    if isinstance(path, Loc):
        path.check_reachable("results")  # an unreachable store or missing bucket, said as such
    if not path.exists():
        raise UserError(f"{path}: no such file or directory")
    if path.is_file():
        return path, None
    for name in RECORD_FILES:
        if (path / name).is_file():
            trials = path / TRIALS_FILE
            return path / name, trials if trials.is_file() else None
    if Loc(path / TRIALS_DIR).exists():
        return None, None
    raise UserError(f"{path}: a results directory must hold {' or '.join(RECORD_FILES)} "
                    f"(or, for a sweep, {TRIALS_DIR}/)")


def _ungathered(path: Path | Loc) -> pd.DataFrame:
    """A sweep's records as `gather` will write them when its driver ends: each trial's own, with
    its swept hyperparameters as `hp.<key>` columns."""
    from scaling_study.tune.gather import gather_records

    table = gather_records(path)
    if table.empty:
        raise UserError(f"{path}: no trial of this sweep has recorded an evaluation yet")
    return table


def read_table(path: Path | Loc) -> pd.DataFrame:
    """Read a CSV or Parquet table; UserError if it cannot be read or has no rows."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            df = read_parquet(Loc(path))
        elif suffix in (".csv", ".txt"):
            df = read_csv(Loc(path), dtype={c: str for c in STRING_COLUMNS})
        else:
            raise UserError(f"{path}: expected a .csv or .parquet file")
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise UserError(f"{path}: cannot read it as a table ({exc})") from exc
    if df.empty:
        raise UserError(f"{path}: the table has no rows")
    return df


def normalize(df: pd.DataFrame, source: str) -> pd.DataFrame:
    """Give the contract's columns their types and add `source`.

    Strings: missing -> "". Numbers: must parse (UserError naming the column otherwise); empty
    cells become NaN. Booleans: True/False, 1/0, yes/no in any case.
    """
    df = df.copy()
    for col in STRING_COLUMNS:
        if col in df.columns:
            df[col] = df[col].astype("string").fillna("").astype(str)
    for col in NUMERIC_COLUMNS:
        if col in df.columns:
            df[col] = _numeric(df[col], col, source)
    for col in BOOL_COLUMNS:
        if col in df.columns:
            df[col] = _boolean(df[col], col, source)
    df["source"] = source
    return df


def _numeric(col: pd.Series, name: str, source: str) -> pd.Series:
    try:
        values = pd.to_numeric(col).astype(float)
    except (ValueError, TypeError) as exc:
        raise UserError(f"{source}: column {name!r} must be numeric ({exc})") from exc
    if name in INT_COLUMNS and values.notna().all() and (values % 1 == 0).all():
        return values.astype("int64")
    return values


def _boolean(col: pd.Series, name: str, source: str) -> pd.Series:
    if col.dtype == bool:
        return col
    text = col.astype("string").fillna("").str.strip().str.lower()
    bad = sorted(set(text) - _TRUE - _FALSE)
    if bad:
        raise UserError(f"{source}: column {name!r} must be true/false; found {bad[:3]}")
    return text.isin(_TRUE)


def assign_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Add the `run` label column (see the module docstring) and return the table."""
    df = df.copy()
    if "run_id" in df.columns or "trial_id" in df.columns:
        run_id = df["run_id"] if "run_id" in df.columns else pd.Series("", index=df.index)
        trial = df["trial_id"] if "trial_id" in df.columns else pd.Series("", index=df.index)
        label = trial.where(trial != "", run_id)
    else:
        label = _config_labels(df)
    # Two files may both hold a run called "run-0": keep them apart by naming the file.
    shared = df.groupby(label.to_numpy())["source"].transform("nunique") > 1
    df["run"] = label.where(~shared, df["source"] + ":" + label)
    return df


def _config_labels(df: pd.DataFrame) -> pd.Series:
    """Label rows of a table without run ids by the configuration columns that vary in it."""
    varying = [c for c in CONFIG_COLUMNS if c in df.columns and df[c].nunique(dropna=False) > 1]
    if not varying:
        return pd.Series("run", index=df.index)
    parts = [c + "=" + df[c].map(_short) for c in varying]
    label = parts[0]
    for part in parts[1:]:
        label = label + " " + part
    return label


def _short(value) -> str:
    """Format a config value for a label: 4.0 -> "4", 0.00125 -> "0.00125"."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def ordered(records: pd.DataFrame) -> pd.DataFrame:
    """The records sorted by run, then by training progress (step, samples, train time)."""
    by = ["run", *[c for c in PROGRESS_COLUMNS if c in records.columns]]
    return records.sort_values(by, kind="stable", na_position="last")


def _sources(df: pd.DataFrame) -> list[str]:
    return list(df["source"].unique()) if "source" in df.columns else []
