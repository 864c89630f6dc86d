"""Reports: loaded results (`scaling_study.results`) and the answers (`scaling_study.answers`)
-> one HTML dashboard + CSV tables, and the exported jobs.

- `build`: the dashboard's sections, with skip notes, and the atomic write of the report folder.
- `figures`, `dashboard`: plotly rendering only. `cli`: the `report` and `export` commands.
- `export`, `recommended`: the best trial, or the recommendation for N workers, as a job YAML.

Imports run one way: reports -> answers -> results (tests/test_import_direction.py). Nothing is
imported here, so `scaling-study --help` stays fast.
"""
