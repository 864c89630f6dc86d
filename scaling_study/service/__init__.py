"""The study service (`scaling-study serve`): browse, watch live, steer, submit and export
studies in a browser and over a JSON API (docs/api.md).

- `roots`, `tail`, `study`, `index`: finding sweeps and runs under the results roots and keeping
  them current by reading only what changed; ids that resolve only inside the roots (`roots.confine`
  is the one check of every file read).
- `memo`, `decimate`: answers made once per change within a byte budget; curves cut to what a
  chart shows.
- `live`: the report functions (tables, figures, dashboard, export) over a study as it is now.
- `events`: server-sent event streams that resume after a dropped connection.
- `launch`: checking and submitting search spaces through Ray's Job Submission API.
- `security`, `http`: loopback by default, a token beyond it, cross-site request protection,
  security headers, no server paths shown remotely; the connections' deadlines and limits.
- `app`, `pages`, `static/`: the FastAPI application, its pages and their one script.

Nothing heavy is imported here, so `scaling-study --help` stays fast.
"""
