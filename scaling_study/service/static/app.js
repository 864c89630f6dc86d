// The study service's pages: one small script, no build step. Data come from the JSON API and
// stay live through server-sent events (EventSource resends Last-Event-ID after a dropped
// connection, and the server resumes from there); if the stream cannot be kept, it polls.
"use strict";

const boot = JSON.parse(document.getElementById("boot").textContent);
const PLOT_CONFIG = { displaylogo: false, responsive: true };
const $ = (sel, root = document) => root.querySelector(sel);

function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  return node;
}

function fmt(v) {
  if (v === null || v === undefined || v === "") return "";
  if (typeof v !== "number") return String(v);
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 1e4 || (Math.abs(v) < 1e-3 && v !== 0) ? v.toExponential(3) : String(+v.toPrecision(4));
}

function ago(t) {
  if (!t) return "";
  const s = Math.max(0, Date.now() / 1000 - t);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(t * 1000).toLocaleString();
}

const studyPath = (id) => id.split("/").map(encodeURIComponent).join("/");

function post(url, body) {
  return fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-Scaling-Study": "1" },
    body: JSON.stringify(body || {}),
  });
}

// A state as a page says it ("stopped_by_user" -> "stopped by a user").
const STATE_WORDS = { stopped_by_user: "stopped by a user" };
const stateText = (s) => STATE_WORDS[s] || String(s).replace(/_/g, " ");

// Server texts name the command line's flags (shared with the CLI); a page names what it shows.
const FLAG_WORDS = { "target-metric": "target metric", target: "target", metric: "metric", workers: "worker count",
  scaling: "scaling", name: "name", recommend: "recommendation", set: "override" };
const pageText = (text) => String(text ?? "").replace(/(^|[\s(])--([a-z][a-z-]*)/g,
  (m, pre, flag) => pre + (FLAG_WORDS[flag] || flag.replace(/-/g, " ")));

function setLive(text) { const n = $("#live"); if (n) n.textContent = text; }

// An EventSource with a polling fallback: `handlers` maps event names to functions of the
// parsed data; `poll()` is called every few seconds once the stream has failed for a while.
function liveStream(url, handlers, poll) {
  let source = null, failedSince = null, timer = null;
  const start = () => {
    source = new EventSource(url);
    source.onopen = () => { failedSince = null; setLive("● live"); };
    source.onerror = () => {
      setLive("○ reconnecting");
      failedSince = failedSince || Date.now();
      if (Date.now() - failedSince > 10000 && !timer && poll) {
        source.close();
        setLive("◌ polling");
        timer = setInterval(poll, 2000);
      }
    };
    for (const [name, fn] of Object.entries(handlers)) {
      source.addEventListener(name, (e) => fn(JSON.parse(e.data)));
    }
  };
  start();
  window.addEventListener("beforeunload", () => source && source.close());
}

// --- the studies list ------------------------------------------------------------------------
function studiesPage() {
  const studies = new Map();
  const selected = new Set();
  let sortKey = "updated", sortDesc = true;
  const value = (s, key) => key === "best" ? (s.best ? s.best.value : -Infinity)
    : key === "workers" ? (s.workers[s.workers.length - 1] || 0) : (s[key] ?? "");

  function render() {
    const text = $("#filter").value.toLowerCase(), status = $("#status-filter").value;
    const rows = [...studies.values()]
      .filter((s) => (!status || s.status === status)
        && (!text || `${s.name} ${s.path} ${s.status} ${s.kind} ${s.note || ""} ${(s.tags || []).join(" ")}`
          .toLowerCase().includes(text)))
      .sort((a, b) => {
        const x = value(a, sortKey), y = value(b, sortKey);
        return (x < y ? -1 : x > y ? 1 : 0) * (sortDesc ? -1 : 1);
      });
    const body = $("#studies tbody");
    body.replaceChildren(...rows.map((s) => h("tr", { "data-id": s.id, "data-status": s.status },
      h("td", {}, h("input", { type: "checkbox", checked: selected.has(s.id), "aria-label": `select ${s.name}`,
        onchange: (e) => { e.target.checked ? selected.add(s.id) : selected.delete(s.id); render(); } })),
      h("td", {}, h("a", { href: `/studies/${studyPath(s.id)}` }, s.name), " ", ...tagChips(s.tags),
        h("div", { class: "muted" }, s.root), s.note ? h("div", { class: "study-note" }, s.note) : null),
      h("td", {}, s.imported ? "imported records" : s.kind),
      h("td", {}, h("span", { class: `badge ${s.status}` }, stateText(s.status))),
      h("td", {}, `${s.n_trials}`, h("div", { class: "muted" },
        Object.entries(s.counts).map(([k, n]) => `${n} ${stateText(k)}`).join(", "))),
      // A study listed before its records were read (a large root, just opened): they follow.
      h("td", {}, s.loading ? h("span", { class: "muted" }, "reading…")
        : s.best && s.metric ? `${s.metric.name} ${fmt(s.best.value)}` : ""),
      h("td", {}, s.loading ? "" : s.workers.join(", ")),
      h("td", { title: s.updated ? new Date(s.updated * 1000).toLocaleString() : "" }, ago(s.updated)))));
    $("#empty").hidden = studies.size > 0;
    $("#compare").disabled = selected.size < 2;
  }

  document.querySelectorAll("#studies th[data-key]").forEach((th) => th.addEventListener("click", () => {
    sortDesc = sortKey === th.dataset.key ? !sortDesc : th.dataset.key === "updated";
    sortKey = th.dataset.key;
    document.querySelectorAll("#studies th").forEach((x) => x.classList.remove("sorted-asc", "sorted-desc"));
    th.classList.add(sortDesc ? "sorted-desc" : "sorted-asc");
    render();
  }));
  $("#filter").addEventListener("input", render);
  $("#status-filter").addEventListener("change", render);
  $("#compare").addEventListener("click", () => {
    location.href = `/compare?ids=${[...selected].map(encodeURIComponent).join(",")}`;
  });
  const replace = (d) => { studies.clear(); d.studies.forEach((s) => studies.set(s.id, s)); render(); };
  liveStream("/api/events", {
    snapshot: replace,
    update: (d) => { d.studies.forEach((s) => studies.set(s.id, s)); d.removed.forEach((id) => studies.delete(id)); render(); },
  }, () => fetch("/api/studies").then((r) => r.json()).then(replace));
  setInterval(render, 5000);  // "last update" ages
}

// --- report sections (study and compare pages) -----------------------------------------------
// The exploring sections (reports/explore.py): on a study page they sit under the trial table.
const EXPLORE = ["parallel", "importance", "history", "slices"];

// Draw the report's sections into `holder`, leaving out `skip` (or drawing only `only`).
// A section drawn as a table only (no figure) links its CSV when `tables` (the study's API base) is given.
function drawSections(data, skip, holder = $("#sections"), only = null, tables = null) {
  $("#report-note").textContent = pageText(data.note) || (data.target ? `Target: ${data.target}` : "");
  const brushed = keptBrush(holder);
  holder.replaceChildren();
  for (const s of data.sections) {
    if (skip.includes(s.key) || (only && !only.includes(s.key))) continue;
    if (s.key === "parallel" && s.figure) restoreBrush(s.figure, brushed);
    const div = h("div", { class: "plot", id: `figure-${s.key}` });
    holder.append(h("section", { id: `section-${s.key}` }, h("h3", {}, s.title),
      h("p", { class: "definition" }, s.definition),
      // Notes fold away: the chart and its definition first, the fine print on request.
      s.notes.length ? h("details", { class: "notes" }, h("summary", {}, `Notes (${s.notes.length})`),
        h("ul", {}, s.notes.map((n) => h("li", {}, pageText(n))))) : null,
      s.skipped ? h("p", { class: "skipped" }, `Not drawn: ${pageText(s.skipped)}`) : (s.figure ? div : null),
      !s.skipped && !s.figure && tables ? h("p", {}, "Table: ", s.tables.map((n) =>
        h("a", { href: `${tables}/tables/${encodeURIComponent(n)}.csv`, download: "" }, `${n}.csv`))) : null));
    if (!s.skipped && s.figure) Plotly.react(div, s.figure.data, s.figure.layout, PLOT_CONFIG);
  }
}

// Parallel coordinates: the ranges brushed on its axes survive a redraw (live data), by axis label.
function keptBrush(holder) {
  const div = holder.querySelector("#figure-parallel");
  if (!div || !div.data) return {};
  return Object.fromEntries(div.data[0].dimensions.filter((d) => d.constraintrange).map((d) => [d.label, d.constraintrange]));
}
function restoreBrush(figure, ranges) {
  for (const d of figure.data[0].dimensions) if (ranges[d.label]) d.constraintrange = ranges[d.label];
}
// The trials (`layout.meta.runs`, in line order) inside every brushed range; null when none is brushed.
function brushedRuns(div) {
  const trace = div.data[0], runs = (div.layout.meta || {}).runs || [];
  const dims = trace.dimensions.filter((d) => d.constraintrange && d.constraintrange.length);
  if (!dims.length) return null;
  const inside = (v, r) => (Array.isArray(r[0]) ? r : [r]).some(([lo, hi]) => v >= lo && v <= hi);
  return new Set(runs.filter((_, i) => dims.every((d) => inside(d.values[i], d.constraintrange))));
}

// --- one study -------------------------------------------------------------------------------
const STOP_NOTE = "stop requested: the sweep ends at its next step";

function studyPage() {
  const id = boot.study.id, base = `/api/studies/${studyPath(id)}`;
  const state = { study: boot.study, rows: {}, seq: 0, curvesMetric: null, tables: [], stopAsked: false };
  let figuresTimer = null, figuresAt = 0;

  function header() {
    const s = state.study;
    $("#status").textContent = stateText(s.status);
    if (s.imported) $("#study-kind").textContent = "imported records";
    $("#status").className = `badge ${s.status}`;
    $("#counts").textContent = Object.entries(s.counts || {}).map(([k, n]) => `${n} ${stateText(k)}`).join(", ");
    const canStop = s.kind === "sweep" && (s.status === "running" || s.status === "submitted");
    // A refresh read before this page's stop request reached the sweep's folder must not undo it.
    const stopRequested = s.stop_requested || state.stopAsked;
    $("#stop-sweep").hidden = !canStop || stopRequested;
    // Resumable from here: a sweep the service submitted, stopped or interrupted (the server says
    // why not, if it cannot).
    $("#resume-sweep").hidden = !(s.kind === "sweep" && ["interrupted", "stopped_by_user"].includes(s.status)
      && s.submission && s.submission.space);
    // The note also carries this page's own answers (resumed as job N, an error): a refresh
    // replaces only the stop request's text.
    const note = $("#stop-note");
    if (stopRequested) note.textContent = STOP_NOTE;
    else if (note.textContent === STOP_NOTE) note.textContent = "";
  }

  function stopButton(t) {
    const s = state.study;
    const canStop = s.kind === "sweep" && s.status === "running" && (t.state === "running" || t.state === "pending")
      && !t.stop_requested && !t.planned;  // a run, or a trial Tune has not made, has nothing to stop
    if (!canStop) return t.stop_requested ? "stop requested" : "";
    return h("button", { class: "danger stop-trial", "data-trial": t.trial_id, onclick: async (e) => {
      e.target.disabled = true;
      const r = await post(`${base}/trials/${encodeURIComponent(t.trial_id)}/stop`);
      e.target.replaceWith(r.ok ? "stop requested" : `could not stop: ${pageText((await r.json()).error)}`);
    } }, "Stop");
  }
  const table = TrialTable(() => state, stopButton);
  const recommender = recommendPanel(base);
  let recommended = false;
  const notes = notesEditor($("#study-notes"), `${base}/notes`, () => ({ note: state.study.note, tags: state.study.tags }));

  function rungs() {
    const list = state.study.rungs || [];
    if (!list.length) return;
    // With scheduler.group_by each group has its own ASHA: say which group a rung belongs to.
    const grouped = list.some((r) => r.group);
    $("#rungs").replaceChildren(h("table", { class: "data" },
      h("thead", {}, h("tr", {}, grouped ? h("th", {}, "group") : null, h("th", {}, "bracket"),
        h("th", {}, "milestone"), h("th", {}, "trials recorded"), h("th", {}, "values"))),
      h("tbody", {}, list.map((r) => h("tr", {}, grouped ? h("td", {}, r.group || "") : null,
        h("td", {}, r.bracket), h("td", {}, fmt(r.milestone)), h("td", {}, Object.keys(r.results).length),
        h("td", { class: "params" }, Object.entries(r.results).map(([k, v]) => `${k}: ${fmt(v)}`).join("  ")))))));
  }

  // The curves come from the report's own figure; new evaluations extend its lines in place.
  function extendCurves(newRows) {
    const div = $("#curves"), metric = state.curvesMetric;
    if (!metric || !div.data) return;
    for (const [trial, rows] of Object.entries(newRows)) {
      const pts = rows.filter((r) => r[metric] !== null && r.train_time_s !== null);
      if (!pts.length) continue;
      const x = pts.map((r) => r.train_time_s), y = pts.map((r) => r[metric]);
      const i = div.data.findIndex((t) => t.name === trial);
      if (i >= 0) Plotly.extendTraces(div, { x: [x], y: [y] }, [i]);
      else Plotly.addTraces(div, { x, y, name: trial, mode: "lines+markers", type: "scatter" });
    }
  }

  function drawFigures(data) {
    const curves = data.sections.find((s) => s.key === "curves");
    if (curves && curves.figure) {
      state.curvesMetric = data.metric;
      Plotly.react($("#curves"), curves.figure.data, curves.figure.layout, PLOT_CONFIG);
    } else {  // nothing recorded yet: say so, rather than draw empty axes
      state.curvesMetric = null;
      Plotly.purge($("#curves"));
    }
    $("#curves-empty").hidden = Boolean(curves && curves.figure);
    $("#curves").hidden = !(curves && curves.figure);
    // the recommendation has its own panel on this page
    drawSections(data, ["curves", "trials", "recommendation", ...EXPLORE], $("#sections"), null, base);
    drawSections(data, [], $("#explore-sections"), EXPLORE);
    const parallel = $("#figure-parallel");
    if (parallel && parallel.on) {  // brushing an axis filters the trial table
      table.brush(brushedRuns(parallel));
      parallel.on("plotly_restyle", () => table.brush(brushedRuns(parallel)));
    } else table.brush(null);
    const names = ["records", ...new Set(data.sections.flatMap((s) => s.tables))];
    $("#tables").replaceChildren(...names.flatMap((n, i) => [i ? ", " : "",
      h("a", { href: `${base}/tables/${encodeURIComponent(n)}.csv`, download: "" }, n)]));
  }

  function loadFigures() {
    figuresTimer = null;
    figuresAt = Date.now();
    fetch(`${base}/figures`).then((r) => r.json()).then(drawFigures);
  }
  function scheduleFigures() {  // the whole report at most every 3 s while evaluations land
    if (figuresTimer) return;
    figuresTimer = setTimeout(loadFigures, Math.max(0, 3000 - (Date.now() - figuresAt)));
  }

  function apply(d, snapshot) {
    const fresh = {};
    if (snapshot) state.rows = {};
    for (const [trial, rows] of Object.entries(d.evaluations || {})) {
      const replaced = snapshot || (d.replaced || []).includes(trial);
      state.rows[trial] = replaced ? rows : (state.rows[trial] || []).concat(rows);
      if (!replaced && rows.length) fresh[trial] = rows;
    }
    state.study = d;
    state.seq = d.seq;
    header();
    notes.show();
    table.render();
    rungs();
    if (!recommended && Object.values(d.evaluations || {}).some((rows) => rows.length)) {
      recommended = true;
      recommender.ask();
    }
    if (snapshot || (d.replaced || []).length) loadFigures();
    else if (Object.keys(fresh).length) { extendCurves(fresh); scheduleFigures(); }
    if (d.submission && d.submission.job_id) followJob();
  }

  let following = false;
  function followJob() {
    if (following) return;
    following = true;
    $("#job").hidden = false;
    const log = $("#job-log");
    const source = new EventSource(`${base}/log`);
    let opened = 0;
    source.onopen = () => { if (opened++) log.textContent = ""; };  // a reconnect streams the log again
    source.addEventListener("log", (e) => {
      log.textContent += JSON.parse(e.data).text;
      log.hidden = !log.textContent;
      $("#job-log-empty").hidden = !log.hidden;
      log.scrollTop = log.scrollHeight;
    });
    source.addEventListener("end", (e) => {
      const s = JSON.parse(e.data);
      $("#job-status").textContent = `${s.job_id}: ${s.status}${s.message ? ` (${s.message})` : ""}`;
      source.close();
    });
    source.onerror = () => { $("#job-status").textContent = "log stream interrupted; retrying"; };
    $("#job-status").textContent = `job ${state.study.submission.job_id}`;
  }

  $("#stop-sweep").addEventListener("click", async (e) => {
    if (!confirm("Stop the whole sweep? Running trials end at their next evaluation and keep their records "
      + "and checkpoints; the sweep can be resumed later.")) return;
    e.target.disabled = true;
    const r = await post(`${base}/stop`);
    if (r.ok) {
      state.stopAsked = true;
      header();
    } else {
      $("#stop-note").textContent = pageText((await r.json()).error);
      e.target.disabled = false;
    }
  });
  $("#resume-sweep").addEventListener("click", async (e) => {
    e.target.disabled = true;
    const r = await post(`${base}/resume`);
    const d = await r.json();
    if (r.ok) {  // a resumed sweep can be stopped again
      state.stopAsked = false;
      $("#stop-sweep").disabled = false;
    }
    $("#stop-note").textContent = r.ok ? `resumed as Ray job ${d.job_id}` : pageText(d.error);
    e.target.disabled = r.ok;
  });

  function exportUrl() {
    const form = new FormData($("#export")), q = new URLSearchParams();
    for (const [k, v] of form.entries()) if (v) q.set(k, v);
    if (q.has("target")) { q.set("target_metric", state.study.metric ? state.study.metric.name : ""); q.set("metric", "time_to_target"); }
    if (!q.get("target_metric")) q.delete("target_metric");
    return `${base}/best.yaml${q.toString() ? `?${q}` : ""}`;
  }
  $("#best-link").addEventListener("click", async (e) => {
    e.preventDefault();
    const r = await fetch(exportUrl());
    $("#export-error").hidden = r.ok;
    if (!r.ok) { $("#export-error").textContent = pageText((await r.json()).error); return; }
    const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
    const a = h("a", { href: URL.createObjectURL(await r.blob()), download: name ? name[1] : "best.yaml" });
    document.body.append(a);
    a.click();
    a.remove();
  });
  $("#dashboard-link").href = `${base}/dashboard.html?download=1`;

  header();
  liveStream(`${base}/events`, { snapshot: (d) => apply(d, true), update: (d) => apply(d, false) },
    () => fetch(`${base}?since=${state.seq}`).then((r) => r.json()).then((d) => { if (d.seq !== state.seq) apply(d, false); }));
}

({ studies: studiesPage, study: studyPage, trial: trialPage, compare: comparePage, submit: submitPage })[document.body.dataset.page]();
