"""Routes of the pages' richer views: one trial (its page, job, checkpoints and log), and resuming
a sweep.

`register(app, index)` adds them; it runs before the study page's catch-all route
(`/studies/{sid:path}`), so that `/studies/ID/trials/TRIAL` reaches the trial page. See
docs/api.md.
"""
from __future__ import annotations

import os

from fastapi import FastAPI, Query, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
)
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from scaling_study.service import (
    compare,
    events,
    live,
    notes,
    pages,
    plan,
    recommendation,
    resume,
    trial_files,
)
from scaling_study.service.index import Index
from scaling_study.service.roots import NotFound
from scaling_study.service.trial import json_rows


def register(app: FastAPI, index: Index) -> None:
    """Add the trial page, the trial's API and the resume action to `app`."""

    @app.put("/api/studies/{sid:path}/trials/{trial}/notes")
    async def trial_notes(sid: str, trial: str, request: Request):
        """Set a trial's note and tags (`{note, tags}`), kept in the study's notes.json."""
        body = await _small_json(request)
        study = await run_in_threadpool(index.get, sid)
        trial_files.trial_folder(study, trial)
        return await run_in_threadpool(notes.save, study, body, trial)

    @app.put("/api/studies/{sid:path}/notes")
    async def study_notes(sid: str, request: Request):
        """Set the study's note and tags (`{note, tags}`), kept in its folder's notes.json."""
        body = await _small_json(request)
        study = await run_in_threadpool(index.get, sid)
        return await run_in_threadpool(notes.save, study, body)

    @app.get("/api/studies/{sid:path}/recommendation")
    def study_recommendation(sid: str, gpus: int = Query(64, ge=1, le=recommendation.MAX_GPUS),
                             cluster: str | None = Query(None, max_length=40),
                             device: str | None = Query(None, max_length=64),
                             profile: str | None = Query(None, max_length=64)):
        """The recommendation for `gpus` GPUs on `cluster` (INTRA[+[K x]NET]) from the runs on
        `device`, projected with the compute of the named device `profile`: optimizer, global and
        per-worker batch, accumulation, peak LR, steps and time to the records' target with their
        95 % intervals, its basis (measured, projected or extrapolated) and what the projection assumes."""
        try:
            records = live.results(index.get(sid, events.REFRESH_S)).records  # not the whole report
        except live.Conflict as exc:  # nothing recorded yet: an answer that says so, not an error
            return {"row": None, "why": f"no recommendation yet: {exc}", "devices": []}
        return recommendation.panel(records, gpus, cluster, device, profile or None, app.state.profiles)

    @app.get("/api/compare/settings")
    def compare_settings(ids: str = Query(..., max_length=4096)):
        """Each study's settings side by side: `{studies: [{id, name, kind, status, settings}],
        differing: [KEY]}` (keys whose values are not the same in every study)."""
        wanted = [v for v in ids.split(",") if v][:compare.MAX_STUDIES]
        if not wanted:
            raise NotFound("ids: give the studies to compare, e.g. ?ids=0:sweep_a,0:sweep_b")
        studies = [index.get(sid, events.REFRESH_S) for sid in dict.fromkeys(wanted)]
        rows = [{"id": s.id, "name": s.name, "kind": s.kind, "status": s.status, "settings": compare.settings(s)}
                for s in studies]
        return {"studies": rows, "differing": compare.differing([r["settings"] for r in rows])}

    @app.get("/api/override-keys")
    def override_keys():
        """Every key a submission's override may name, with its type, default and meaning (the
        configuration reference): `{keys: [{key, type, default, doc}]}`."""
        return {"keys": plan.override_keys()}

    @app.get("/api/spaces/estimate")
    def space_estimate(space: str = Query(..., min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.\-]+$"),
                       trials: int = Query(..., ge=1, le=100_000)):
        """Wall time to expect for `trials` trials of the search space file `space`, from the
        finished sweeps under the roots that ran it: `{seconds, basis}`, or `{seconds: null}`."""
        return plan.estimate(index, space, trials) or {"seconds": None, "basis": []}

    @app.post("/api/studies/{sid:path}/resume")
    async def resume_sweep(sid: str):
        """Submit a stopped or interrupted sweep again, resumed (`sweep --resume`), as a Ray job."""
        study = await run_in_threadpool(index.get, sid, 0.0)
        record = await run_in_threadpool(resume.resume, study, app.state.launcher)
        return JSONResponse({**record, "study": study.id}, 202)

    @app.get("/studies/{sid:path}/trials/{trial}", response_class=HTMLResponse, include_in_schema=False)
    def trial_page(sid: str, trial: str):
        study = index.get(sid)
        trial_files.trial_folder(study, trial)
        return HTMLResponse(pages.trial_page(study.summary(), trial))

    @app.get("/api/studies/{sid:path}/trials/{trial}")
    def trial_detail(sid: str, trial: str):
        """One trial: its table row, every evaluation, its job YAML, checkpoints and log files."""
        study = index.get(sid, events.REFRESH_S)
        trial_files.trial_folder(study, trial)
        with study.lock:
            t = study.trials[trial]
            row, rows = study.trial_row(t), json_rows(t.records)
        best, m = study.best(), study.summary()["metric"]
        return {**row, "study": study.id, "study_name": study.name, "study_status": study.status,
                "metric_name": m and m["name"], "metric_label": m and m["label"],
                "is_best": bool(best and best["trial_id"] == trial),
                "evaluations": rows, "job": trial_files.job_text(study, trial),
                "checkpoints": trial_files.checkpoints(study, trial)}

    @app.get("/api/studies/{sid:path}/trials/{trial}/job.yaml")
    def trial_job(sid: str, trial: str):
        """The job the trial ran, as it ran it (`scaling-study run` runs it again)."""
        study = index.get(sid)
        text = trial_files.job_text(study, trial)
        if text is None:
            raise NotFound(f"trial {trial!r} has no job.yaml yet")
        return PlainTextResponse(text, media_type="application/yaml",
                                 headers={"Content-Disposition": f'attachment; filename="{trial}.yaml"'})

    @app.get("/api/studies/{sid:path}/trials/{trial}/checkpoint.zip")
    def trial_checkpoint(sid: str, trial: str, name: str | None = None):
        """A checkpoint folder of the trial as a zip (default: the newest)."""
        path, filename = trial_files.checkpoint_zip(index.get(sid), trial, name)
        return FileResponse(path, media_type="application/zip", filename=filename,
                            background=BackgroundTask(os.unlink, path))

    @app.get("/api/studies/{sid:path}/trials/{trial}/log")
    def trial_log(sid: str, trial: str):
        """The end of each log file Tune kept for the trial: {files: [{name, text, truncated}]}."""
        return trial_files.log_text(index.get(sid), trial)


MAX_NOTES_BODY = 16 * 1024


async def _small_json(request: Request):
    """The request's JSON body, at most `MAX_NOTES_BODY` bytes (notes.BadNote otherwise)."""
    import json

    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_NOTES_BODY:
            raise notes.BadNote(f"the body is larger than {MAX_NOTES_BODY} bytes")
    try:
        return json.loads(body or b"{}")
    except ValueError:
        raise notes.BadNote('the body must be JSON: {"note": TEXT, "tags": [TAG, ...]}') from None
