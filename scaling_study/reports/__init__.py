"""Reports: records -> scaling, time-to-target and sweep figures -> one HTML dashboard + CSV tables.

- `records`: load run dirs, sweep dirs and CSV/Parquet files into one checked table (`load_results`).
- `runs`, `scaling`, `targets`, `sweeps`: pure functions over that table (one row per evaluation);
  their docstrings state the definitions the dashboard shows.
- `build`: the dashboard's sections, with skip notes, and the atomic write of the report folder.
- `figures`, `dashboard`: plotly rendering only. `cli`: the `report` command.

Nothing is imported here, so `scaling-study --help` stays fast.
"""
