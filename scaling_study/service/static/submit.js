// The submit page: a shipped or uploaded search space, checked as the CLI checks it, previewed
// (its trials, and its time from past sweeps of the same space), then submitted. Loaded before
// app.js, whose helpers (h, $, fmt, post, pageText, setLive, boot) these functions use.
"use strict";

// --- submitting ------------------------------------------------------------------------------
function duration(s) {
  if (s < 90) return `${Math.round(s)} s`;
  if (s < 5400) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}

// What a checked space will run, and how long that took before (finished sweeps of the same file).
async function showPreview(checked) {
  const p = checked.preview;
  if (!p) { $("#preview").hidden = true; return; }
  $("#preview").hidden = false;
  $("#preview-trials").textContent = `${p.trials} trial${p.trials === 1 ? "" : "s"}, scheduler ${p.scheduler}`
    + (p.max_concurrent_trials ? `, at most ${p.max_concurrent_trials} at once` : "");
  $("#preview-dimensions").replaceChildren(...Object.entries(p.dimensions).map(([k, v]) =>
    h("li", {}, `${k}: ${Array.isArray(v) ? v.map(fmt).join(", ") : v}`)));
  const q = new URLSearchParams({ space: checked.space, trials: p.trials });
  const r = await fetch(`/api/spaces/estimate?${q}`);
  const e = r.ok ? await r.json() : { seconds: null, basis: [] };
  $("#preview-estimate").textContent = e.seconds === null
    ? "No finished sweep of this space under the results roots yet to estimate its time from."
    : `About ${duration(e.seconds)}, from ${e.basis.length} finished sweep${e.basis.length === 1 ? "" : "s"} of this space `
      + `(${e.basis.map((b) => `${b.study}: ${b.trials} trials in ${duration(b.seconds)}`).join("; ")}).`;
}

// Override keys from the configuration reference: completed as typed, described when chosen.
async function overrideHelp() {
  const keys = (await (await fetch("/api/override-keys")).json()).keys;
  const byKey = new Map(keys.map((k) => [k.key, k]));
  $("#override-keys").replaceChildren(...keys.map((k) => h("option", { value: k.key }, `${k.type} — ${k.doc}`)));
  $("#override-key").addEventListener("input", (e) => {
    const k = byKey.get(e.target.value.trim());
    if (k) $("#override-help").textContent = `${k.key} (${k.type}, default ${k.default.replace(/`/g, "")}): ${k.doc}`;
  });
  $("#add-override").addEventListener("click", () => {
    const key = $("#override-key").value.trim(), value = $("#override-value").value.trim();
    if (!key) return;
    const area = $("#overrides");
    area.value = `${area.value.trim() ? `${area.value.trim()}\n` : ""}${key}=${value}`;
    $("#override-key").value = $("#override-value").value = "";
  });
}
function submitPage() {
  setLive("");
  const form = $("#submit-form");
  let upload = null;
  const describe = () => {
    const s = boot.spaces.find((x) => x.name === $("#space").value);
    $("#space-description").textContent = s ? s.description : "";
  };
  $("#space").addEventListener("change", () => { describe(); send(false); });
  describe();
  overrideHelp();
  $("#upload").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    upload = file ? { yaml: await file.text(), filename: file.name } : null;
    form.querySelector("input[value=upload]").checked = true;
  });

  function body(dryRun) {
    const shipped = form.querySelector("input[name=source]:checked").value === "shipped";
    const overrides = $("#overrides").value.split("\n").map((l) => l.trim()).filter(Boolean);
    const b = { overrides, root: Number($("#root").value), dry_run: dryRun };
    return shipped ? { ...b, space: $("#space").value } : { ...b, ...(upload || { yaml: "" , filename: "" }) };
  }
  function showErrors(errors) {
    $("#errors").replaceChildren(...errors.map((e) => h("li", { "data-key": e.key || "" },
      h("b", {}, e.key || e.source || "file"), `: ${pageText(e.message)}`, e.source && e.key ? h("span", { class: "muted" }, ` (${e.source})`) : null)));
  }
  // The page always checks first (a check answers 200 with the errors), and submits only a
  // space that passed: the same checks as the CLI, shown inline, naming the key.
  let latest = 0;  // checks overlap (a new space chosen while one runs): only the latest answer shows
  async function send(submit) {
    const mine = ++latest;
    showErrors([]);
    $("#submit-result").textContent = "checking…";
    const checked = await (await post("/api/submit", body(true))).json();
    if (mine !== latest) return;
    if (!checked.ok) { $("#submit-result").textContent = ""; showErrors(checked.errors); return; }
    showPreview(checked);
    if (!submit) { $("#submit-result").textContent = `${checked.space}: valid (sweep ${checked.name})`; return; }
    $("#submit-result").textContent = "submitting…";
    const r = await post("/api/submit", body(false));
    const d = await r.json();
    if (!r.ok) { $("#submit-result").textContent = ""; showErrors(d.errors || [{ key: null, message: d.error }]); return; }
    $("#submit-result").replaceChildren(`submitted as Ray job ${d.job_id}: `, h("a", { href: d.url, id: "new-study" }, d.study));
    setTimeout(() => { location.href = d.url; }, 800);
  }
  $("#check").addEventListener("click", () => send(false));
  send(false);  // the default space's preview at once
  form.addEventListener("submit", (e) => { e.preventDefault(); send(true); });
}
