"""The service's HTML pages: a skeleton per page, filled and kept live by `static/app.js`.

Pages are plain strings with every value escaped; data a page starts from travels as JSON in a
`<script type="application/json">` block (with `</` escaped, so no value can close it). plotly.js
comes from the installed plotly package (`/static/plotly.min.js`): no CDN, no build step.
"""
from __future__ import annotations

import html
import json

from scaling_study.answers.links import DEFAULT_CLUSTER
from scaling_study.contract import METRICS, metric_label
from scaling_study.reports.export import TIME_TO_TARGET
from scaling_study.service.events import jsonable
from scaling_study.service.plan import DEFAULT_SPACE
from scaling_study.service.recommendation import interconnects, profiles


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _boot(data) -> str:
    text = json.dumps(jsonable(data)).replace("</", "<\\/").replace("<!--", "<\\!--")
    return f'<script type="application/json" id="boot">{text}</script>'


SCRIPTS = ("trials.js", "compare.js", "recommend.js", "submit.js", "app.js")
"""The page scripts, in order: app.js last (its helpers are used by the others' functions when they
run, and it starts the page)."""


def _layout(page: str, title: str, body: str, data, plots: bool = False) -> str:
    plotly = '<script src="/static/plotly.min.js"></script>\n' if plots else ""
    scripts = "".join(f'<script src="/static/{name}" defer></script>\n' for name in SCRIPTS)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(title)} · scaling-study</title>\n"
        "<link rel=\"icon\" href=\"data:,\">\n"
        "<link rel=\"stylesheet\" href=\"/static/style.css\">\n"
        f"{plotly}{scripts}</head>\n"
        f"<body data-page=\"{_e(page)}\">\n"
        "<nav><a href=\"/\" class=\"brand\">scaling-study</a> <a href=\"/\">Studies</a> "
        "<a href=\"/submit\">Submit</a> <span id=\"live\" class=\"live\" title=\"live updates\">○ connecting</span></nav>\n"
        f"<main>\n{body}\n</main>\n{_boot(data)}\n</body>\n</html>\n"
    )


def studies_page() -> str:
    body = """<h1>Studies</h1>
<div class="toolbar">
  <input id="filter" type="search" placeholder="filter by name, path, status, tag or note" aria-label="filter">
  <select id="status-filter" aria-label="status"><option value="">any status</option>
    <option>running</option><option>finished</option><option>interrupted</option><option>failed</option>
    <option>submitted</option><option value="stopped_by_user">stopped by a user</option></select>
  <button id="compare" disabled>Compare selected</button>
</div>
<table id="studies" class="data sortable">
<thead><tr><th></th><th data-key="name">Study</th><th data-key="kind">Kind</th><th data-key="status">Status</th>
<th data-key="n_trials">Trials</th><th data-key="best">Best</th><th data-key="workers">Workers</th>
<th data-key="updated" class="sorted-desc">Last update</th></tr></thead>
<tbody></tbody></table>
<p id="empty" class="muted" hidden>No studies under the roots yet.</p>"""
    return _layout("studies", "Studies", body, {})


def _notes_box(box_id: str) -> str:
    """The notes-and-tags editor of a study or a trial (filled and saved by static/trials.js)."""
    return NOTES_BOX.replace("{id}", _e(box_id))


NOTES_BOX = """<details class="notes-box" id="{id}"><summary>Notes and tags <span class="tags"></span></summary>
<textarea class="note" rows="3" maxlength="4000" aria-label="note" placeholder="what you learned, what to try next"></textarea>
<input class="tags-input" aria-label="tags" placeholder="tags, separated by commas (e.g. baseline, lr-too-high)">
<button type="button" class="save-notes">Save</button> <span class="notes-status muted"></span></details>"""


def _options(values, selected) -> str:
    return "".join(f'<option value="{_e(v)}"{" selected" if v == selected else ""}>{_e(v)}</option>' for v in values)


def _metric_options() -> str:
    names = [*METRICS, TIME_TO_TARGET]
    return "".join(f'<option value="{_e(n)}">{_e(n)}</option>' for n in names)


def study_page(summary: dict, profile_names: list[str] = ()) -> str:
    name = summary["name"]
    body = f"""<h1><span id="study-name">{_e(name)}</span> <span id="status" class="badge">{_e(summary['status'])}</span></h1>
<p class="muted"><span id="study-path">{_e(summary['path'])}</span> · <span id="study-kind">{_e(summary['kind'])}</span>
 · <span id="counts"></span></p>
<div class="toolbar"><button id="stop-sweep" class="danger" hidden>Stop the sweep</button>
 <button id="resume-sweep" hidden>Resume the sweep</button>
 <span id="stop-note" class="muted"></span></div>
{_notes_box("study-notes")}
<section><h2>Trials</h2>
<div class="toolbar">
 <input id="trial-filter" type="search" placeholder="search trials: id, hyperparameter, state" aria-label="search trials">
 <select id="trial-state" aria-label="trial state"><option value="">any state</option></select>
 <details id="columns" class="columns"><summary>Columns</summary><div id="column-choices"></div></details>
 <span id="trial-count" class="muted"></span>
</div>
<table id="trials" class="data sortable"><thead></thead><tbody></tbody></table>
</section>
<section><h2>Metric vs train time</h2><p id="curves-empty" class="muted" hidden>No evaluation recorded yet: each
trial's curve appears with its first evaluation.</p><div id="curves" class="plot"></div></section>
<section id="explore"><h2>Explore the hyperparameters</h2><div id="explore-sections"><p class="muted">Drawn with the
first evaluations.</p></div></section>
<section id="recommend"><h2>Recommendation for your cluster</h2>
<form id="recommend-form" class="inline">
 <label>GPUs <input name="gpus" type="number" min="1" max="65536" value="64"></label>
 <label>interconnect <select name="cluster">{_options(interconnects(), DEFAULT_CLUSTER)}</select></label>
 <label>runs on <select name="device" aria-label="runs on"></select></label>
 <label>device profile <select name="profile" aria-label="device profile"><option value="">the runs' own timings</option>{_options(profile_names or profiles(), "")}</select></label>
 <button type="submit">Recommend</button></form>
<table id="recommend-table" class="data narrow"><tbody></tbody></table>
<p id="recommend-note" class="muted"></p></section>
<section id="report"><h2>Report</h2><p id="report-note" class="muted"></p><div id="sections"></div></section>
<section><h2>ASHA rungs</h2><div id="rungs" class="muted">No rungs recorded.</div></section>
<section id="job" hidden><h2>Ray job</h2><p id="job-status"></p><p id="job-log-empty" class="muted">Waiting for the job's
first output…</p><pre id="job-log" class="log" hidden></pre></section>
<section><h2>Export</h2>
<form id="export" class="inline">
 <label>by <select name="metric"><option value="">the study's metric</option>{_metric_options()}</select></label>
 <label>target <input name="target" type="number" step="any" placeholder="records' own"></label>
 <label>rescale to <input name="workers" type="number" min="0" placeholder="N workers"></label>
 <label><select name="scaling"><option value="">job's scaling</option><option>weak</option><option>strong</option></select></label>
 <a id="best-link" class="button" href="#">Download best job YAML</a>
</form>
<p id="export-error" class="error" hidden></p>
<p>Tables as CSV: <span id="tables"></span> · <a id="dashboard-link" href="#">static dashboard</a></p>
</section>"""
    return _layout("study", name, body, {"study": summary}, plots=True)


def compare_page(summaries: list[dict]) -> str:
    rows = "".join(
        f"<tr data-id=\"{_e(s['id'])}\"><td><span class=\"swatch\"></span> <a href=\"/studies/{_e(s['id'])}\">{_e(s['name'])}</a></td><td>{_e(s['kind'])}</td>"
        f"<td>{_e(s['status'])}</td><td>{_e(s['n_trials'])}</td><td>{_e(_best(s))}</td>"
        f"<td>{_e(', '.join(map(str, s['workers'])))}</td></tr>" for s in summaries)
    body = f"""<h1>Compare {len(summaries)} studies</h1>
<table class="data" id="compared"><thead><tr><th>Study</th><th>Kind</th><th>Status</th><th>Trials</th><th>Best</th><th>Workers</th></tr></thead>
<tbody>{rows}</tbody></table>
<section><h2>Settings</h2><label><input type="checkbox" id="only-differs" checked> show only what differs</label>
<table id="settings" class="data"><thead></thead><tbody></tbody></table></section>
<section><h2>Metric vs train time</h2>
<div class="toolbar"><label>colour and legend by <select id="group-by" aria-label="group by">
 <option value="study">study</option><option value="setting">study and setting</option></select></label></div>
<div id="compare-curves" class="plot"></div></section>
<section id="report"><h2>Report over all of them</h2><p id="report-note" class="muted"></p><div id="sections"></div></section>"""
    return _layout("compare", "Compare", body, {"ids": [s["id"] for s in summaries]}, plots=True)


def _best(summary: dict) -> str:
    best, metric = summary.get("best"), summary.get("metric")
    if not best or not metric:
        return ""
    return f"{metric['name']} {best['value']:.4g} ({best['trial_id']})"


def submit_page(spaces: list[dict], roots: list[str]) -> str:
    options = "".join(f'<option value="{_e(s["name"])}"{" selected" if s["name"] == DEFAULT_SPACE else ""}>'
                      f'{_e(s["name"])}</option>' for s in spaces)
    root_options = "".join(f'<option value="{i}">{_e(r)}</option>' for i, r in enumerate(roots))
    body = f"""<h1>Submit a sweep</h1>
<form id="submit-form">
<fieldset><legend>Search space</legend>
 <label><input type="radio" name="source" value="shipped" checked> shipped:
  <select name="space" id="space">{options}</select></label><br>
 <label><input type="radio" name="source" value="upload"> upload: <input type="file" id="upload" accept=".yaml,.yml"></label>
 <p id="space-description" class="muted"></p>
</fieldset>
<fieldset><legend>Overrides</legend>
 <div class="toolbar"><input id="override-key" list="override-keys" placeholder="key, e.g. set.train.steps"
  aria-label="override key" autocomplete="off"> = <input id="override-value" placeholder="value" aria-label="override value">
  <button type="button" id="add-override">Add</button></div>
 <datalist id="override-keys"></datalist>
 <p id="override-help" class="muted">Keys of the search space, or <code>set.</code> and any key of its base job; each
 is described in the configuration reference.</p>
 <textarea name="overrides" id="overrides" rows="4" placeholder="one KEY=VALUE per line, e.g. set.train.steps=20"></textarea>
</fieldset>
<fieldset><legend>Results</legend><label>root <select name="root" id="root">{root_options}</select></label></fieldset>
<button type="button" id="check">Check</button> <button type="submit" id="launch">Submit</button>
</form>
<ul id="errors" class="error"></ul><p id="submit-result"></p>
<section id="preview" hidden><h2>Preview</h2><p id="preview-trials"></p><ul id="preview-dimensions" class="params"></ul>
<p id="preview-estimate"></p></section>"""
    return _layout("submit", "Submit", body, {"spaces": spaces})


TRIAL_CURVES = (*METRICS, "throughput", "lr", "grad_noise_scale")
"""The records' columns a trial page draws against samples, when the trial recorded them."""


def trial_page(summary: dict, trial_id: str) -> str:
    """One trial: its parameters, every metric's curve, its job, checkpoints and log."""
    sid, name = summary["id"], summary["name"]
    body = f"""<p class="muted"><a href="/studies/{_e(sid)}">&larr; {_e(name)}</a></p>
<h1>Trial <span id="trial-id">{_e(trial_id)}</span> <span id="trial-state" class="badge"></span>
 <span id="trial-best" class="best-mark" hidden title="the study's best trial">&#9733; best</span></h1>
<p class="muted" id="trial-summary"></p>
{_notes_box("trial-notes")}
<section><h2>Parameters</h2><table id="params" class="data narrow"><tbody></tbody></table></section>
<section><h2>Metrics</h2><p class="muted">Every recorded metric against samples seen.</p><div id="metric-plots" class="small-multiples"></div></section>
<section><h2>Job</h2><p><a id="job-link" class="button" download>Download job.yaml</a>
 <span class="muted">runs again as it is with <code>scaling-study run</code></span></p><pre id="job-yaml" class="yaml"></pre></section>
<section><h2>Checkpoints</h2><ul id="checkpoints"></ul></section>
<section><h2>Log</h2><div id="trial-log"><p class="muted">Loading…</p></div></section>"""
    return _layout("trial", f"{trial_id} · {name}", body, {"study": summary, "trial": trial_id,
                                                        "curves": {c: metric_label(c) for c in TRIAL_CURVES}}, plots=True)
