// The compare page: the studies' settings side by side (only what differs, by default), and their
// learning curves with one colour per study and a grouping chosen by the user. Loaded before
// app.js, whose helpers (h, $, fmt, studyPath, pageText, PLOT_CONFIG, boot) these functions use.
"use strict";

const STUDY_COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf",
  "#bcbd22", "#7f7f7f"];
const RECORD_GROUPS = { optimizer: "optimizer", num_workers: "workers", global_batch: "global batch" };

function settingsTable(data) {
  const only = $("#only-differs").checked, differing = new Set(data.differing);
  const keys = [...new Set(data.studies.flatMap((s) => Object.keys(s.settings)))].sort()
    .filter((k) => !only || differing.has(k));
  $("#settings thead").replaceChildren(h("tr", {}, h("th", {}, "setting"), data.studies.map((s) => h("th", {}, s.name))));
  $("#settings tbody").replaceChildren(...keys.map((k) => h("tr", { "data-key": k, class: differing.has(k) ? "differs" : null },
    h("th", {}, k), data.studies.map((s) => h("td", { class: "params" }, s.settings[k] ?? "—")))));
  if (!keys.length) $("#settings tbody").replaceChildren(h("tr", {}, h("td", { class: "muted" }, "The studies' settings are the same.")));
}

// One line per trial. "study": one colour and one legend entry per study; "setting": one colour
// per study, one legend entry per setting under its study's title; otherwise one colour per value.
function compareTraces(studies, metric, groupBy) {
  const traces = [], seen = new Set(), values = [];
  studies.forEach((st, si) => {
    for (const t of st.trials) {
      const rows = (st.evaluations[t.trial_id] || []).filter((r) => r[metric] !== null && r[metric] !== undefined
        && r.train_time_s !== null);
      if (!rows.length) continue;
      const setting = Object.entries(t.params || {}).map(([k, v]) => `${k.split(".").pop()}=${fmt(v)}`).join(" ");
      let name = st.name, colour = STUDY_COLOURS[si % STUDY_COLOURS.length], group = st.id, title = null;
      if (groupBy === "setting") {
        name = setting || t.trial_id;
        group = `${st.id} ${name}`;
        title = seen.has(`title ${st.id}`) ? null : st.name;
        seen.add(`title ${st.id}`);
      } else if (groupBy !== "study") {
        const v = groupBy.startsWith("p:") ? (t.params || {})[groupBy.slice(2)] : rows[rows.length - 1][groupBy];
        name = `${RECORD_GROUPS[groupBy] || groupBy.slice(2)} = ${fmt(v)}`;
        group = name;
        if (!values.includes(name)) values.push(name);
        colour = STUDY_COLOURS[values.indexOf(name) % STUDY_COLOURS.length];
      }
      traces.push({ x: rows.map((r) => r.train_time_s), y: rows.map((r) => r[metric]), type: "scatter", mode: "lines",
        name, legendgroup: groupBy === "setting" ? st.id : group, showlegend: !seen.has(group),
        legendgrouptitle: title ? { text: title } : undefined, line: { color: colour, width: 1.5 },
        hovertemplate: `${st.name} · ${t.trial_id}<br>${setting}<br>%{x:.0f} s → %{y:.4g}<extra></extra>` });
      seen.add(group);
    }
  });
  return traces;
}

function groupOptions(studies) {
  const params = [...new Set(studies.flatMap((s) => s.trials.flatMap((t) => Object.keys(t.params || {}))))].sort();
  const select = $("#group-by");
  for (const [k, label] of Object.entries(RECORD_GROUPS)) select.append(h("option", { value: k }, label));
  for (const p of params) select.append(h("option", { value: `p:${p}` }, p));
}

async function comparePage() {
  setLive("");
  const ids = boot.ids.map(encodeURIComponent).join(",");
  fetch(`/api/compare/figures?ids=${ids}`).then((r) => r.json()).then((d) => drawSections(d, ["trials", "curves"]));
  fetch(`/api/compare/settings?ids=${ids}`).then((r) => r.json()).then((d) => {
    settingsTable(d);
    $("#only-differs").addEventListener("change", () => settingsTable(d));
  });
  const studies = await Promise.all(boot.ids.map((id) => fetch(`/api/studies/${studyPath(id)}`).then((r) => r.json())));
  studies.forEach((s, i) => {
    const swatch = document.querySelector(`#compared tr[data-id="${CSS.escape(s.id)}"] .swatch`);
    if (swatch) swatch.style.background = STUDY_COLOURS[i % STUDY_COLOURS.length];
  });
  const withMetric = studies.find((s) => s.metric);
  const metric = withMetric ? withMetric.metric : null;
  groupOptions(studies);
  const draw = () => {
    if (!metric) { $("#compare-curves").replaceChildren(h("p", { class: "muted" }, "No metric recorded yet.")); return; }
    Plotly.react($("#compare-curves"), compareTraces(studies, metric.name, $("#group-by").value), {
      height: 460, xaxis: { title: { text: "train time (s)" } }, yaxis: { title: { text: metric.label } },
      legend: { groupclick: "toggleitem" } }, PLOT_CONFIG);
  };
  $("#group-by").addEventListener("change", draw);
  draw();
}
