"""The study service: a FastAPI application serving the pages and the JSON API (docs/api.md).

`create_app(roots, address, token, host)` builds it; `scaling-study serve` runs it on uvicorn.
Reads go through the `Index` (incremental, cached per study); reports through `live` (the
report functions themselves); steering through `tune.steer` request files; submissions through
`launch` (Ray's Job Submission API).
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from scaling_study import layout
from scaling_study.errors import UserError
from scaling_study.service import events, live, pages, routes_ui
from scaling_study.service.index import Index
from scaling_study.service.launch import MAX_UPLOAD_BYTES, Launcher, SubmitError, check, discard, shipped_spaces
from scaling_study.service.roots import NotFound, child, parse_roots
from scaling_study.service.security import Guard, check_bind, is_loopback
from scaling_study.service.study import RUNNING, SUBMITTED, SWEEP
from scaling_study.tune import steer

DEFAULT_ROOTS = ("sweeps", "runs")
READ_BUDGET_S = 0.1
"""A studies list waits this long for studies to be read in full; the rest are listed from their
outline and read in the background (see `index.Index`)."""
STATIC = Path(__file__).with_name("static")
_MAX_BODY = 2 * MAX_UPLOAD_BYTES + 16 * 1024  # an upload travels as JSON text, escaped


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package (no CDN, no build step)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def encode(content) -> bytes:
    """JSON without NaN (browsers cannot parse it): missing values are null."""
    return events.dumps(content, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class JSON(JSONResponse):
    """A JSON answer (`encode`); bytes are sent as they are (made, and cached, by the route)."""

    def render(self, content) -> bytes:
        return content if isinstance(content, bytes) else encode(content)


def create_app(roots: list[str] | None = None, address: str | None = None, token: str | None = None,
               host: str = "127.0.0.1", launcher: Launcher | None = None) -> FastAPI:
    """The service over `roots` (folders or object-store URIs; default `sweeps` and `runs`),
    submitting to the Ray cluster at `address` (default: a local Ray started on first submit).
    Refuses (UserError) to serve beyond loopback without a `token`."""
    check_bind(host, token)
    index = Index(parse_roots(list(roots or DEFAULT_ROOTS)), read_budget_s=READ_BUDGET_S)
    app = FastAPI(title="scaling-study service", default_response_class=JSON, docs_url="/api/docs",
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.index, app.state.reports = index, live.Reports()
    app.state.launcher = launcher or Launcher(address)
    _errors(app)
    _static_routes(app)
    routes_ui.register(app, index)  # before the catch-all study routes: /studies/ID/trials/T
    _page_routes(app, index)
    _study_routes(app, index)
    _action_routes(app, index)
    app.add_middleware(Guard, token=token, loopback_only=is_loopback(host))
    return app


def _errors(app: FastAPI) -> None:
    handlers = ((NotFound, 404), (live.Conflict, 409))

    for cls, status in handlers:
        app.add_exception_handler(cls, lambda request, exc, status=status: JSON({"error": str(exc)}, status))
    app.add_exception_handler(SubmitError, lambda request, exc: JSON({"errors": [exc.as_json()]}, 422))
    app.add_exception_handler(UserError, lambda request, exc: JSON({"error": str(exc)}, 400))


def _static_routes(app: FastAPI) -> None:
    cache = {"Cache-Control": "public, max-age=3600"}

    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_asset():
        return FileResponse(plotly_js(), media_type="text/javascript", headers=cache)

    @app.get("/static/{name}", include_in_schema=False)
    def asset(name: str):
        files = {p.name: p for p in STATIC.iterdir()}
        if name not in files:
            raise NotFound(f"no static file {name!r}")
        kind = {".js": "text/javascript", ".css": "text/css"}.get(files[name].suffix, "application/octet-stream")
        return FileResponse(files[name], media_type=kind, headers={"Cache-Control": "no-cache"})


def _page_routes(app: FastAPI, index: Index) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def studies_page():
        return HTMLResponse(pages.studies_page())

    @app.get("/submit", response_class=HTMLResponse, include_in_schema=False)
    def submit_page():
        return HTMLResponse(pages.submit_page(shipped_spaces(), [r.label for r in index.roots]))

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(ids: str = ""):
        studies = [index.get(sid) for sid in _ids(ids)]
        return HTMLResponse(pages.compare_page([s.summary() for s in studies]))

    @app.get("/studies/{sid:path}", response_class=HTMLResponse, include_in_schema=False)
    def study_page(sid: str):
        study = index.get(sid)
        return HTMLResponse(pages.study_page(study.summary()))


def _ids(value: str) -> list[str]:
    ids = [v for v in value.split(",") if v]
    if not ids:
        raise UserError("ids: give the studies to compare, e.g. ?ids=0:sweep_a,0:sweep_b")
    return ids


def _study_routes(app: FastAPI, index: Index) -> None:
    reports: live.Reports = app.state.reports

    listed: dict = {}  # the last answer, by what it depends on

    @app.get("/api/studies")
    def list_studies():
        """Every study under the roots with its status, trial counts, best metric, workers and last update."""
        studies = index.studies(events.SCAN_S, wait=False)  # re-listed in the background when stale
        roots = [{"index": r.index, "root": r.label, "error": index.unreadable.get(r.label)} for r in index.roots]
        key = (id(studies), index.seq, repr(roots))  # `studies` is a new list after any change
        body = listed.get(key, (None, None))[1]
        if body is None:
            body = encode({"studies": studies, "seq": key[1], "epoch": index.epoch, "roots": roots})
            listed.clear()
            listed[key] = (studies, body)  # holding the list keeps its id from being reused
        return JSON(body)

    @app.get("/api/spaces")
    def spaces():
        """The shipped search spaces (search_spaces/*.yaml) with the first lines of their comment."""
        return {"spaces": shipped_spaces()}

    @app.get("/api/events")
    async def list_events(request: Request):
        """Server-sent events: the studies list, live."""
        stream = events.studies_stream(index, request.headers.get("last-event-id"), request.is_disconnected)
        return _sse(stream)

    @app.get("/api/compare/figures")
    def compare_figures(ids: str):
        """The report's figures over several studies at once (as `report A B` draws them)."""
        res = live.combined([index.get(sid, events.REFRESH_S) for sid in _ids(ids)])
        _, report, why = live.report_of(res, "Comparison")
        return live.figures(report, why)

    @app.get("/api/studies/{sid:path}/events")
    async def study_events(sid: str, request: Request):
        """Server-sent events: the study and its new evaluations, live (resumes with Last-Event-ID)."""
        index.get(sid)  # 404 before the stream starts
        stream = events.study_stream(index, sid, request.headers.get("last-event-id"), request.is_disconnected)
        return _sse(stream)

    @app.get("/api/studies/{sid:path}/figures")
    def study_figures(sid: str):
        """The report's sections with their plotly figures (JSON), as the dashboard draws them."""
        try:
            _, report, why = reports.get(index.get(sid, events.REFRESH_S))
        except live.Conflict as exc:  # nothing recorded yet: an empty report, not an error
            return {"sections": [], "note": str(exc)}
        return live.figures(report, why)

    @app.get("/api/studies/{sid:path}/dashboard.html")
    def study_dashboard(sid: str, download: bool = False):
        """The static dashboard `scaling-study report` writes, for this study as it is now."""
        study = index.get(sid, events.REFRESH_S)
        _, report, why = reports.get(study)
        headers = {"Content-Disposition": f'attachment; filename="{study.name}-dashboard.html"'} if download else {}
        return HTMLResponse(live.dashboard(report, why), headers=headers)

    @app.get("/api/studies/{sid:path}/tables/{name}.csv")
    def study_table(sid: str, name: str):
        """A table of the report (or `records`: every evaluation) as CSV."""
        study = index.get(sid, events.REFRESH_S)
        res, report, _ = reports.get(study)
        return PlainTextResponse(live.table_csv(res, report, name), media_type="text/csv",
                                 headers={"Content-Disposition": f'attachment; filename="{study.name}-{name}.csv"'})

    @app.get("/api/studies/{sid:path}/best.yaml")
    def study_best(sid: str, metric: str | None = None, mode: str | None = None, workers: int | None = None,
                   scaling: str | None = None, target_metric: str | None = None, target: float | None = None):
        """The best trial's job YAML, as `scaling-study export` writes it (optionally rescaled)."""
        study = index.get(sid, events.REFRESH_S)
        name, text = live.best_yaml(study, metric=metric, mode=mode, workers=workers, scaling=scaling,
                                    target_metric=target_metric, target=target)
        return Response(text, media_type="application/yaml",
                        headers={"Content-Disposition": f'attachment; filename="{name}"'})

    @app.get("/api/studies/{sid:path}/job")
    def study_job(sid: str):
        """Status of the Ray job the service submitted for this study."""
        return app.state.launcher.job(index.get(sid).submission)

    @app.get("/api/studies/{sid:path}/log")
    async def study_log(sid: str, request: Request):
        """Server-sent events: the log of the Ray job the service submitted for this study."""
        job = index.get(sid).submission.get("job_id")
        if not job:
            raise NotFound(f"study {sid!r} was not submitted by the service")
        return _sse(events.log_stream(app.state.launcher, job, request.is_disconnected))

    @app.get("/api/studies/{sid:path}")
    def study_detail(sid: str, since: int | None = None, evaluations: bool = True):
        """The study with its trials and their evaluations (only those after `since`, if given)."""
        study = index.get(sid, events.REFRESH_S)
        body = study.cached(("detail", since, evaluations), lambda: encode(
            {**study.detail(since=since, evaluations=evaluations), "epoch": index.epoch}))
        return JSON(body)


def _sse(stream) -> StreamingResponse:
    return StreamingResponse(stream, media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def _action_routes(app: FastAPI, index: Index) -> None:
    @app.post("/api/studies/{sid:path}/trials/{trial}/stop")
    def stop_trial(sid: str, trial: str):
        """Ask the sweep to stop one trial at its next evaluation (it keeps its records)."""
        study = _running_sweep(index, sid)
        if trial not in study.trials:
            raise NotFound(f"study {sid!r} has no trial {trial!r}")
        child(study.root, study.loc / layout.TRIALS_DIR, trial)  # a plain name inside the root
        request = steer.request_stop(study.loc, trial)
        study.refresh()  # open pages see "stop requested" at once
        return JSON({"requested": True, "trial_id": trial, "request": str(request)}, 202)

    @app.post("/api/studies/{sid:path}/stop")
    def stop_sweep(sid: str):
        """Ask the sweep to stop; it ends as interrupted and `sweep --resume` continues it."""
        study = _running_sweep(index, sid)
        request = steer.request_stop(study.loc)
        study.refresh()
        return JSON({"requested": True, "request": str(request)}, 202)

    @app.post("/api/submit")
    async def submit(request: Request):
        """Check a shipped or uploaded search space as the CLI does, then launch it as a Ray job."""
        body = await _json_body(request)
        return await _submit(app, index, body)


def _running_sweep(index: Index, sid: str):
    study = index.get(sid, 0.0)
    if study.kind != SWEEP:
        raise live.Conflict(f"study {sid!r} is a run; only a sweep's trials can be stopped from here")
    if study.status not in (RUNNING, SUBMITTED):
        raise live.Conflict(f"study {sid!r} is {study.status}; there is nothing to stop")
    return study


async def _json_body(request: Request) -> dict:
    import json

    size = request.headers.get("content-length")
    if size is not None and (not size.isdigit() or int(size) > _MAX_BODY):
        raise SubmitError(f"the request is larger than {_MAX_BODY} bytes (an upload may have at most "
                          f"{MAX_UPLOAD_BYTES})", key="yaml")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY:
            raise SubmitError(f"the request is larger than {_MAX_BODY} bytes", key="yaml")
    try:
        data = json.loads(body or b"{}")
    except ValueError:
        raise SubmitError("the body must be JSON: {\"space\": NAME} or {\"yaml\": TEXT, \"filename\": NAME}") from None
    if not isinstance(data, dict):
        raise SubmitError("the body must be a JSON object")
    return data


async def _submit(app: FastAPI, index: Index, body: dict):
    """`dry_run`: 200 with {ok, errors} (a check is answered, not refused); otherwise 201 with the
    submission, or 422 with the errors."""
    from starlette.concurrency import run_in_threadpool

    try:
        checked, root = await run_in_threadpool(_check_body, index, body)
    except SubmitError as exc:
        if body.get("dry_run"):
            return {"ok": False, "errors": [exc.as_json()]}
        raise
    if body.get("dry_run"):
        discard(checked.path)
        return {"ok": True, "errors": [], "name": checked.name, "space": checked.shown_as, "preview": checked.preview}
    record = await run_in_threadpool(app.state.launcher.submit, checked, root)
    sid = f"{root.index}:{checked.name}"
    return JSON({**record, "study": sid, "url": f"/studies/{sid}"}, 201)


def _check_body(index: Index, body: dict):
    overrides = body.get("overrides") or []
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        raise SubmitError("a list of KEY=VALUE strings", key="overrides")
    upload = body.get("yaml")
    if upload is not None and not isinstance(upload, str):
        raise SubmitError("the uploaded file's text", key="yaml")
    root_index = body.get("root", 0)
    if not isinstance(root_index, int) or not 0 <= root_index < len(index.roots):
        raise SubmitError(f"one of 0..{len(index.roots) - 1}", key="root")
    for key in ("space", "filename"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise SubmitError("a file name", key=key)
    checked = check(body.get("space"), upload.encode() if upload is not None else None, body.get("filename"),
                    overrides)
    return checked, index.roots[root_index]
