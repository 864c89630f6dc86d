// The study page's recommendation panel: N GPUs, an interconnect and a device profile in; the
// recommended optimizer, batch, LR, accumulation and time to target out, with its basis and what
// a projection assumes. Loaded before app.js, whose helpers (h, $, fmt, pageText) it uses.
"use strict";

const RECOMMEND_ROWS = [["basis", "basis"], ["optimizer", "optimizer"], ["global_batch", "global batch"],
  ["per_worker_batch", "per-worker batch"], ["grad_accum", "accumulation steps"], ["peak_lr", "peak LR"],
  ["lr_rule", "LR rule"], ["steps_to_target", "steps to target"], ["steps_interval", "steps, 95 % interval"],
  ["time_to_target_s", "time to target (s)"], ["time_interval", "time (s), 95 % interval"],
  ["run", "from run"], ["detail", "why"]];

// "lo – hi" of a row's interval columns, or null where it has none.
function interval(row, lo, hi) {
  return row[lo] == null || row[hi] == null ? null : `${fmt(row[lo])} – ${fmt(row[hi])}`;
}

function recommendPanel(base) {
  const form = $("#recommend-form");
  async function ask() {
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, v);
    const r = await fetch(`${base}/recommendation?${q}`);
    const d = await r.json();
    if (!r.ok) {
      $("#recommend-table tbody").replaceChildren();
      $("#recommend-note").textContent = pageText(d.error || (d.detail || []).map((e) => e.msg).join("; "));
      return;
    }
    const select = form.elements.device;
    if (d.devices.length && select.options.length !== d.devices.length) {
      select.replaceChildren(...d.devices.map((v) => h("option", { value: v, selected: v === d.device }, v)));
    }
    if (!d.row) { $("#recommend-table tbody").replaceChildren(); $("#recommend-note").textContent = pageText(d.why); return; }
    d.row.steps_interval = interval(d.row, "steps_lo", "steps_hi");
    d.row.time_interval = interval(d.row, "time_lo_s", "time_hi_s");
    $("#recommend-table tbody").replaceChildren(...RECOMMEND_ROWS.filter(([k]) => d.row[k] !== null && d.row[k] !== "")
      .map(([k, label]) => h("tr", { "data-key": k }, h("th", {}, label), h("td", {}, fmt(d.row[k])))));
    $("#recommend-note").textContent = `For ${d.row.num_workers} GPUs to ${d.target}, from the runs on ${d.device}`
      + (d.profile ? `, with the compute of ${d.profile}. ` : ". ") + pageText(d.plan);
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); ask(); });
  return { ask };
}
