"""The study service: a FastAPI application serving the pages and the JSON API (docs/api.md).

`create_app(roots, address, token, host)` builds it; `scaling-study serve` runs it on uvicorn.
Reads go through the `Index` (incremental, cached per study); reports through `live` (the
report functions themselves); steering through `tune.steer` request files; submissions through
`launch` (Ray's Job Submission API).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse

from scaling_study import layout
from scaling_study.errors import UserError
from scaling_study.service import events, live, pages, routes_ui
from scaling_study.service.index import Index
from scaling_study.service.launch import MAX_UPLOAD_BYTES, Launcher, SubmitError, check, shipped_spaces
from scaling_study.service.recommendation import Profiles
from scaling_study.service.roots import NotFound, Root, Unreadable, child, confine_export, parse_roots
from scaling_study.service.security import (
    SANDBOX_CSP, Guard, Redactor, check_bind, content_disposition, is_loopback, shorten,
)
from scaling_study.service.decimate import thin_figure
from scaling_study.service.study import CURVE_POINTS, RUNNING, SUBMITTED, SWEEP
from scaling_study.tune import steer
from scaling_study.tune.submit import ROOT as PROJECT

DEFAULT_ROOTS = ("sweeps", "runs")
READ_BUDGET_S = 0.1
"""A studies list waits this long for studies to be read in full; the rest are listed from their
outline and read in the background (see `index.Index`)."""
STATIC = Path(__file__).with_name("static")
_MAX_BODY = 2 * MAX_UPLOAD_BYTES + 16 * 1024  # an upload travels as JSON text, escaped
MAX_COMPARE = 32
"""The most studies one comparison reports on (each is a report's worth of work)."""
MAX_WORKERS = 65_536
"""The largest worker count an export may rescale to (a bound, not a cluster size)."""


def plotly_js() -> Path:
    """plotly.min.js of the installed plotly package (no CDN, no build step)."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / "plotly.min.js"


def encode(content) -> bytes:
    """JSON without NaN (browsers cannot parse it): missing values are null. Text that is not
    Unicode (a lone surrogate, e.g. from a `"\\ud800"` in a results file) is sent escaped, as JSON
    allows, rather than failing the answer."""
    options = {"separators": (",", ":")}
    try:
        return events.dumps(content, ensure_ascii=False, **options).encode("utf-8")
    except UnicodeEncodeError:
        return events.dumps(content, **options).encode("ascii")


def utf8(text: str) -> bytes:
    """A page, table or file as UTF-8; a character that has none (a lone surrogate) becomes '?'."""
    return text.encode("utf-8", "replace")


class JSON(JSONResponse):
    """A JSON answer (`encode`); bytes are sent as they are (made, and cached, by the route)."""

    def render(self, content) -> bytes:
        return content if isinstance(content, bytes) else encode(content)


def create_app(roots: list[str] | None = None, address: str | None = None, token: str | None = None,
               host: str = "127.0.0.1", launcher: Launcher | None = None,
               device_profiles: list[str] = ()) -> FastAPI:
    """The service over `roots` (folders or object-store URIs; default `sweeps` and `runs`),
    submitting to the Ray cluster at `address` (default: a local Ray started on first submit);
    its recommendation panel offers the named device profiles and the `device_profiles` files.
    Refuses (UserError) to serve beyond loopback without a `token`."""
    check_bind(host, token)
    profiles = Profiles(list(device_profiles))  # a bad file fails here, before anything listens
    index = Index(parse_roots(list(roots or DEFAULT_ROOTS), remote=not is_loopback(host)), read_budget_s=READ_BUDGET_S)
    # No interactive docs: Swagger UI would load its scripts from a CDN. The schema stays.
    app = FastAPI(title="scaling-study service", default_response_class=JSON, docs_url=None,
                  redoc_url=None, openapi_url="/api/openapi.json")
    app.state.index, app.state.reports, app.state.profiles = index, live.Reports(), profiles
    app.state.launcher = launcher or Launcher(address)
    app.router.on_shutdown.append(app.state.launcher.close)  # the local Ray it started, if any
    _errors(app, index.roots)
    _static_routes(app)
    routes_ui.register(app, index)  # before the catch-all study routes: /studies/ID/trials/T
    _page_routes(app, index)
    _study_routes(app, index)
    _action_routes(app, index)
    app.add_middleware(Guard, token=token, loopback_only=is_loopback(host),
                       redact=None if is_loopback(host) else Redactor(_server_paths(index.roots)))
    return app


def public(text, roots: list[Root]) -> str:
    """`text` for an answer: cut short, server paths as the client knows them (a root by the name
    it is shown under, the project's files relative to the project)."""
    text = str(text)
    for root in roots:
        if root.loc.is_local:
            text = text.replace(str(root.loc), root.shown)
    return shorten(text.replace(str(PROJECT) + "/", "").replace(str(PROJECT), "."))


def _server_paths(roots: list[Root]) -> list[tuple[str, str]]:
    """(server path, what a remote client is shown instead): each local root (as given and with
    its links resolved) by its public name, the project by nothing (its files relative to it)."""
    pairs = [(str(PROJECT) + "/", ""), (str(PROJECT), ".")]
    for root in roots:
        if root.loc.is_local:
            pairs += [(str(root.loc), root.public), (root.real, root.public)]
    return pairs


def _public_errors(exc: SubmitError, roots: list[Root]) -> list[dict]:
    return [{k: public(v, roots) if v is not None else None for k, v in exc.as_json().items()}]


def _errors(app: FastAPI, roots: list[Root]) -> None:
    handlers = ((NotFound, 404), (live.Conflict, 409), (Unreadable, 409), (UserError, 400))

    for cls, status in handlers:
        app.add_exception_handler(cls, lambda request, exc, status=status: JSON({"error": public(exc, roots)}, status))
    app.add_exception_handler(SubmitError, lambda request, exc: JSON({"errors": _public_errors(exc, roots)}, 422))
    app.add_exception_handler(RequestValidationError, lambda request, exc: JSON({"error": public("; ".join(
        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()), roots)}, 422))


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
        return HTMLResponse(utf8(pages.studies_page()))

    @app.get("/submit", response_class=HTMLResponse, include_in_schema=False)
    def submit_page():
        return HTMLResponse(utf8(pages.submit_page(shipped_spaces(), [r.shown for r in index.roots])))

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def compare_page(ids: str = ""):
        studies = [index.get(sid) for sid in _ids(ids)]
        return HTMLResponse(utf8(pages.compare_page([s.summary() for s in studies])))

    @app.get("/studies/{sid:path}", response_class=HTMLResponse, include_in_schema=False)
    def study_page(sid: str):
        study = index.get(sid)
        return HTMLResponse(utf8(pages.study_page(study.summary(), app.state.profiles.names())))


def _figures(reports: live.Reports, study, roots: list[Root]) -> dict:
    try:
        _, report, why = reports.get(study)
    except live.Conflict as exc:  # nothing recorded yet: an empty report, not an error
        return {"sections": [], "note": public(exc, roots)}
    figures = live.figures(report, why)
    for section in figures["sections"]:
        if section["figure"] is not None:  # a chart shows no more points than a trial's curve sends
            thin_figure(section["figure"], CURVE_POINTS)
    return figures


def _ids(value: str) -> list[str]:
    ids = list(dict.fromkeys(v for v in value.split(",") if v))
    if not ids:
        raise UserError("ids: give the studies to compare, e.g. ?ids=0:sweep_a,0:sweep_b")
    if len(ids) > MAX_COMPARE:
        raise UserError(f"ids: {len(ids)} studies; a comparison takes at most {MAX_COMPARE}")
    return ids


def _study_routes(app: FastAPI, index: Index) -> None:
    reports: live.Reports = app.state.reports

    listed: dict = {}  # the last answer, by what it depends on

    @app.get("/api/studies")
    def list_studies():
        """Every study under the roots with its status, trial counts, best metric, workers and last update."""
        studies = index.studies(events.SCAN_S, wait=False)  # re-listed in the background when stale
        roots = [{"index": r.index, "root": r.shown, "error": _unreadable(index, r)} for r in index.roots]
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
        study = index.get(sid, events.REFRESH_S)
        return JSON(study.cached(("figures",), lambda: encode(_figures(reports, study, index.roots))))

    @app.get("/api/studies/{sid:path}/dashboard.html")
    def study_dashboard(sid: str, download: bool = False):
        """The static dashboard `scaling-study report` writes, for this study as it is now."""
        study = index.get(sid, events.REFRESH_S)
        _, report, why = reports.get(study)
        headers = {"Content-Security-Policy": SANDBOX_CSP}  # its inline scripts run in an origin of their own
        if download:
            headers["Content-Disposition"] = content_disposition(f"{study.name}-dashboard.html")
        page = study.cached(("dashboard",), lambda: utf8(live.dashboard(report, why)))  # once per change
        return HTMLResponse(page, headers=headers)

    @app.get("/api/studies/{sid:path}/tables/{name}.csv")
    def study_table(sid: str, name: str):
        """A table of the report (or `records`: every evaluation) as CSV."""
        study = index.get(sid, events.REFRESH_S)
        res, report, _ = reports.get(study)
        return PlainTextResponse(utf8(live.table_csv(res, report, name)), media_type="text/csv",
                                 headers={"Content-Disposition": content_disposition(f"{study.name}-{name}.csv")})

    @app.get("/api/studies/{sid:path}/best.yaml")
    def study_best(sid: str, metric: str | None = Query(None, max_length=64),
                   mode: Literal["max", "min"] | None = None,
                   workers: int | None = Query(None, ge=1, le=MAX_WORKERS),
                   scaling: Literal["weak", "strong"] | None = None,
                   target_metric: str | None = Query(None, max_length=64),
                   target: float | None = Query(None, allow_inf_nan=False)):
        """The best trial's job YAML, as `scaling-study export` writes it (optionally rescaled)."""
        study = index.get(sid, events.REFRESH_S)
        confine_export(study)
        name, text = live.best_yaml(study, metric=metric, mode=mode, workers=workers, scaling=scaling,
                                    target_metric=target_metric, target=target)
        return Response(utf8(text), media_type="application/yaml", headers={"Content-Disposition": content_disposition(name)})

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
        """The study with its trials and their evaluations (only those after `since`, if given;
        at most `study.CURVE_POINTS` per trial: the curve, decimated)."""
        study = index.get(sid, events.REFRESH_S)
        since = study.since(since)  # one cached answer per distinct answer, not per value asked
        body = study.cached(("detail", since, evaluations), lambda: encode(
            {**study.detail(since=since, evaluations=evaluations), "epoch": index.epoch}))
        return JSON(body)


def _unreadable(index: Index, root: Root) -> str | None:
    why = index.unreadable.get(root.label)
    return public(why, index.roots) if why else None


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
        return JSON({"requested": True, "trial_id": trial, "request": public(request, index.roots)}, 202)

    @app.post("/api/studies/{sid:path}/stop")
    def stop_sweep(sid: str):
        """Ask the sweep to stop; it ends as interrupted and `sweep --resume` continues it."""
        study = _running_sweep(index, sid)
        request = steer.request_stop(study.loc)
        study.refresh()
        return JSON({"requested": True, "request": public(request, index.roots)}, 202)

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
        json.dumps(data, ensure_ascii=False).encode("utf-8")  # a lone surrogate ("\\ud800") is no text
    except (ValueError, RecursionError):
        raise SubmitError("the body must be JSON text: {\"space\": NAME} or {\"yaml\": TEXT, \"filename\": NAME}") from None
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
            return {"ok": False, "errors": _public_errors(exc, index.roots)}
        raise
    if body.get("dry_run"):
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
    if type(root_index) is not int or not 0 <= root_index < len(index.roots):  # noqa: E721 - true is no index
        raise SubmitError(f"one of 0..{len(index.roots) - 1}", key="root")
    for key in ("space", "filename"):
        if body.get(key) is not None and not isinstance(body[key], str):
            raise SubmitError("a file name", key=key)
    checked = check(body.get("space"), upload.encode() if upload is not None else None, body.get("filename"),
                    overrides)
    return checked, index.roots[root_index]
