"""Results: the records of runs, loaded and checked, and the plain tables computed from them.

- `records`: load run dirs, sweep dirs and CSV/Parquet files into one checked table
  (`load_results`), and `Needs`, the check that a table holds the columns a computation reads.
- `runs`, `scaling`, `targets`, `sweeps`: pure functions over that table (one row per evaluation):
  per-run summaries, weak- and strong-scaling tables, time to target, the LR × batch grid; their
  docstrings state the definitions the dashboard shows.

This package sits below both `answers` and `reports`, which import it; it imports neither
(tests/test_import_direction.py checks the arrows). Nothing is imported here, so
`scaling-study --help` stays fast.
"""
