// Trials: the study page's trial table (sort, search, state filter, chosen columns, the best
// trial marked) and the trial page. Loaded before app.js, whose helpers (h, $, fmt, studyPath,
// post, liveStream, PLOT_CONFIG, boot) these functions use when they run.
"use strict";

const COLUMNS_KEY = "scaling-study.trial-columns";

const tagChips = (tags) => (tags || []).map((t) => h("span", { class: "tag" }, t));

// The notes-and-tags editor in `box` (pages.py's _notes_box), saving to `url` with PUT; `current()`
// gives the saved {note, tags}, shown whenever the box is not being edited.
function notesEditor(box, url, current) {
  const note = box.querySelector(".note"), tags = box.querySelector(".tags-input");
  let editing = false;
  const show = () => {
    const c = current();
    box.querySelector("summary .tags").replaceChildren(...tagChips(c.tags), c.note ? h("span", { class: "muted" }, " ✎") : "");
    if (!editing) { note.value = c.note || ""; tags.value = (c.tags || []).join(", "); }
  };
  for (const el of [note, tags]) el.addEventListener("input", () => { editing = true; });
  box.querySelector(".save-notes").addEventListener("click", async () => {
    const body = { note: note.value, tags: tags.value.split(",").map((t) => t.trim()).filter(Boolean) };
    const r = await fetch(url, { method: "PUT", credentials: "same-origin", body: JSON.stringify(body),
      headers: { "Content-Type": "application/json", "X-Scaling-Study": "1" } });
    const d = await r.json();
    box.querySelector(".notes-status").textContent = r.ok ? "saved" : pageText(d.error);
    if (r.ok) editing = false;
  });
  return { show };
}

function trialColumns(study, trials) {
  const params = [...new Set(trials.flatMap((t) => Object.keys(t.params || {})))];
  const m = study.metric ? study.metric.label : "metric";
  return [
    { key: "trial_id", label: "Trial", fixed: true, value: (t) => t.trial_id },
    ...params.map((p) => ({ key: `p:${p}`, label: p, value: (t) => (t.params || {})[p] })),
    { key: "state", label: "State", value: (t) => t.state },
    { key: "progress", label: "Progress", value: (t) => t.progress },
    { key: "metric", label: `${m} (best)`, value: (t) => t.metric },
    { key: "last_metric", label: `${m} (last)`, value: (t) => t.last_metric, hidden: true },
    { key: "n_evals", label: "Evaluations", value: (t) => t.n_evals },
    { key: "num_workers", label: "Workers", value: (t) => t.num_workers, hidden: true },
    { key: "samples", label: "Samples", value: (t) => t.samples, hidden: true },
    { key: "train_time_s", label: "Train time (s)", value: (t) => t.train_time_s, hidden: true },
    { key: "ended", label: "Ended", value: (t) => t.ended },
    { key: "actions", label: "", fixed: true, nosort: true, value: () => "" },
  ];
}

function compareValues(x, y) {  // missing values last, numbers as numbers
  const missing = (v) => v === null || v === undefined || v === "";
  if (missing(x) || missing(y)) return missing(x) - missing(y);
  if (typeof x === "number" && typeof y === "number") return x - y;
  return String(x).localeCompare(String(y), undefined, { numeric: true });
}

// The table over `getState()` ({study, base}); `stopButton(t)` makes a trial's stop control.
function TrialTable(getState, stopButton) {
  const view = { sort: null, desc: false, brushed: null };  // brushed: trial ids kept by the parallel coordinates
  let chosen = {};
  try { chosen = JSON.parse(localStorage.getItem(COLUMNS_KEY) || "{}"); } catch (e) { chosen = {}; }
  const visible = (c) => c.fixed || (chosen[c.key] ?? !c.hidden);

  function cell(c, t, st) {
    const td = h("td", { "data-col": c.key });
    if (c.key === "trial_id") {
      const best = st.study.best && st.study.best.trial_id === t.trial_id;
      td.append(...[t.planned ? h("span", { class: "muted" }, t.trial_id)
        : h("a", { href: `/studies/${studyPath(st.study.id)}/trials/${encodeURIComponent(t.trial_id)}` }, t.trial_id),
      best ? h("span", { class: "best-mark", title: "the study's best trial" }, " ★ best") : null,
      ...tagChips(t.tags), t.note ? h("span", { class: "muted", title: t.note }, " ✎") : null].filter(Boolean));
    } else if (c.key === "state") {
      td.className = "state";
      td.append(h("span", { class: `state-${t.state}` }, stateText(t.state)));
    } else if (c.key === "progress") {
      const pct = t.progress === null || t.progress === undefined ? null : Math.round(t.progress * 100);
      td.append(pct === null ? "" : h("span", { class: "bar", title: `${pct}%` }, h("span", { style: `width:${pct}%` })),
        t.progress_value === null || t.progress_value === undefined ? ""
          : ` ${fmt(t.progress_value)}${t.budget || t.max_t ? ` / ${fmt(t.budget || t.max_t)}` : ""} ${t.time_attr}`);
    } else if (c.key === "actions") {
      td.append(stopButton(t));
    } else {
      if (c.key === "ended" && t.state === "error") td.className = "error";
      td.append(fmt(c.value(t)));
    }
    return td;
  }

  function chooser(columns) {
    const box = $("#column-choices");
    box.replaceChildren(...columns.filter((c) => !c.fixed).map((c) => h("label", {},
      h("input", { type: "checkbox", "data-col": c.key, checked: visible(c), onchange: (e) => {
        chosen[c.key] = e.target.checked;
        localStorage.setItem(COLUMNS_KEY, JSON.stringify(chosen));
        render();
      } }), ` ${c.label}`)));
  }

  function header(columns) {
    $("#trials thead").replaceChildren(h("tr", {}, columns.filter(visible).map((c) => h("th", {
      "data-col": c.key, "data-key": c.nosort ? null : c.key,
      class: view.sort === c.key ? (view.desc ? "sorted-desc" : "sorted-asc") : null,
      onclick: c.nosort ? null : () => {
        view.desc = view.sort === c.key ? !view.desc : false;
        view.sort = c.key;
        render();
      },
    }, c.label))));
  }

  function states(trials) {
    const select = $("#trial-state"), current = select.value;
    const seen = [...new Set(trials.map((t) => t.state))].sort();
    select.replaceChildren(h("option", { value: "" }, "any state"),
      ...seen.map((s) => h("option", { value: s, selected: s === current }, stateText(s))));
  }

  function render() {
    const st = getState(), trials = st.study.trials || [];
    const columns = trialColumns(st.study, trials);
    const text = $("#trial-filter").value.trim().toLowerCase(), state = $("#trial-state").value;
    let rows = trials.filter((t) => (!view.brushed || view.brushed.has(t.trial_id)) && (!state || t.state === state) && (!text
      || `${t.trial_id} ${t.state} ${t.ended} ${t.note || ""} ${(t.tags || []).join(" ")} ${Object.entries(t.params || {}).map(([k, v]) => `${k}=${v}`).join(" ")}`
        .toLowerCase().includes(text)));
    const col = columns.find((c) => c.key === view.sort);
    if (col) rows = rows.slice().sort((a, b) => compareValues(col.value(a), col.value(b)) * (view.desc ? -1 : 1));
    header(columns);
    chooser(columns);
    states(trials);
    $("#trials tbody").replaceChildren(...rows.map((t) => h("tr", {
      "data-trial": t.trial_id, "data-state": t.state,
      class: st.study.best && st.study.best.trial_id === t.trial_id ? "best" : null,
    }, columns.filter(visible).map((c) => cell(c, t, st)))));
    $("#trial-count").textContent = (rows.length === trials.length ? `${trials.length} trials`
      : `${rows.length} of ${trials.length} trials`) + (view.brushed ? " (in the ranges brushed on the parallel coordinates)" : "");
  }

  $("#trial-filter").addEventListener("input", render);
  $("#trial-state").addEventListener("change", render);
  const brush = (ids) => { view.brushed = ids; render(); };
  return { render, brush };
}

// --- one trial ---------------------------------------------------------------------------------
function trialPage() {
  const sid = boot.study.id, trial = boot.trial;
  const base = `/api/studies/${studyPath(sid)}/trials/${encodeURIComponent(trial)}`;
  $("#job-link").href = `${base}/job.yaml`;
  let timer = null, at = 0, saved = { note: "", tags: [] };
  const editor = notesEditor($("#trial-notes"), `${base}/notes`, () => saved);

  function curves(rows) {
    const holder = $("#metric-plots");
    const drawn = Object.entries(boot.curves).filter(([c]) => rows.some((r) => r[c] !== null && r[c] !== undefined));
    holder.replaceChildren(...drawn.map(([c]) => h("div", { class: "plot small", id: `curve-${c}` })));
    if (!drawn.length) holder.replaceChildren(h("p", { class: "muted" }, "No evaluation recorded yet."));
    for (const [c, label] of drawn) {
      const pts = rows.filter((r) => r[c] !== null && r[c] !== undefined);
      Plotly.react($(`#curve-${c}`), [{ x: pts.map((r) => r.samples), y: pts.map((r) => r[c]), mode: "lines+markers",
        type: "scatter", name: label }], { title: { text: label }, height: 280, margin: { t: 40, r: 10, b: 40, l: 60 },
        xaxis: { title: { text: "samples" } }, yaxis: { title: { text: label } } }, PLOT_CONFIG);
    }
  }

  function show(t) {
    $("#trial-state").textContent = stateText(t.state);
    $("#trial-state").className = `badge state-${t.state}`;
    $("#trial-best").hidden = !t.is_best;
    const metric = t.metric_label || t.metric_name || "metric";
    $("#trial-summary").textContent = [`${t.n_evals} evaluations`, t.samples !== null ? `${fmt(t.samples)} samples` : null,
      t.train_time_s !== null ? `${fmt(t.train_time_s)} s training` : null,
      t.best !== null && t.best !== undefined ? `best ${metric} ${fmt(t.best)}` : null, t.ended || null]
      .filter(Boolean).join(" · ");
    $("#params tbody").replaceChildren(...Object.entries(t.params || {}).map(([k, v]) =>
      h("tr", {}, h("th", {}, k), h("td", { class: "params" }, fmt(v)))));
    if (!Object.keys(t.params || {}).length) $("#params tbody").replaceChildren(h("tr", {}, h("td", { class: "muted" }, "none swept")));
    curves(t.evaluations);
    $("#job-yaml").textContent = t.job || "No job.yaml yet.";
    $("#checkpoints").replaceChildren(...(t.checkpoints.length ? t.checkpoints.map((c) => h("li", {},
      h("a", { href: `${base}/checkpoint.zip?name=${encodeURIComponent(c.name)}`, download: "" }, `${c.name}.zip`)))
      : [h("li", { class: "muted" }, "No checkpoint kept (a sweep keeps the best trial's last one).")]));
  }

  async function load() {
    timer = null;
    at = Date.now();
    const r = await fetch(base);
    const d = await r.json();
    if (!r.ok) { $("#trial-summary").textContent = pageText(d.error); return; }
    show({ ...d, best: d.metric });  // `metric`: the trial's best value of the study's metric
    saved = { note: d.note, tags: d.tags };
    editor.show();
    loadLog();
  }
  async function loadLog() {
    const d = await (await fetch(`${base}/log`)).json();
    const holder = $("#trial-log");
    holder.replaceChildren(...(d.files || []).map((f) => h("div", {}, h("h3", {}, f.name + (f.truncated ? " (its end)" : "")),
      h("pre", { class: "log" }, f.text))));
    if (!(d.files || []).length) holder.replaceChildren(h("p", { class: "muted" }, "No log file kept for this trial."));
  }
  const later = () => { if (!timer) timer = setTimeout(load, Math.max(0, 2000 - (Date.now() - at))); };
  liveStream(`/api/studies/${studyPath(sid)}/events`, {
    snapshot: later,
    update: (d) => { if ((d.evaluations || {})[trial] || (d.trials || []).some((t) => t.trial_id === trial)) later(); },
  }, later);
}
