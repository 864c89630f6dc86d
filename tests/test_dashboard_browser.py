"""Open the dashboard in headless Chromium: it must render every chart offline with no errors.

Errors are caught two ways: a copy of the page carries a collector (window "error" events,
unhandled rejections and console.error) whose findings it writes into the DOM after load, which
`--dump-dom` prints; and Chromium's own console log on stderr. Name resolution is disabled, so a
page that tried to fetch anything (a CDN script) would fail here. A PNG screenshot is kept for a
human to look at (its path is printed; set SCALING_STUDY_SCREENSHOT_DIR to keep a copy).
"""
import html
import json
import os
import re
import shutil
import signal
import struct
import subprocess
from pathlib import Path

import pytest

from fixtures.reports.synthetic import strong_records, write_sweep
from scaling_study.reports.build import build_report, write_report
from scaling_study.reports.figures import figure_for
from scaling_study.reports.dashboard import render_dashboard
from scaling_study.results.records import load_results
from scaling_study.results.targets import make_target

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs headless Chromium: apt-get install -y chromium"),
]

COLLECTOR = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push("error: " + (e.message || e.target.outerHTML)), true);
window.addEventListener("unhandledrejection", e => window.__errors.push("unhandledrejection: " + e.reason));
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push("console.error: " + args.join(" ")); __consoleError(...args); };
window.addEventListener("load", () => setTimeout(() => {
  const pre = document.createElement("pre");
  pre.id = "collected-errors";
  pre.textContent = JSON.stringify(window.__errors);
  document.body.appendChild(pre);
}, 300));
</script>"""


def chromium(url: str, profile: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run headless Chromium once on `url`; its whole process group is killed afterwards."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=10000",
           "--enable-unsafe-swiftshader",  # software WebGL (no GPU here) for the parallel coordinates
           *extra, url]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=90)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # our own group only: helpers Chromium left behind
        except ProcessLookupError:
            pass
        proc.wait()
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    sweep = write_sweep(root / "sweep", workers=(1, 2, 4, 8), seeds=(0, 1))
    (root / "strong").mkdir()
    strong_records(workers=(1, 2, 4, 8)).to_csv(root / "strong" / "records.csv", index=False)
    results = load_results([sweep, root / "strong"])
    report = build_report(results, make_target("f1", 85), "Synthetic scaling study")
    return write_report(report, render_dashboard(report), root / "report"), report


def test_dashboard_renders_every_chart_with_no_console_errors(dashboard, tmp_path):
    page, report = dashboard
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text(encoding="utf-8").replace("<head>", "<head>\n" + COLLECTOR, 1), encoding="utf-8")
    result = chromium(probe.as_uri(), tmp_path / "profile", "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    found = re.search(r'<pre id="collected-errors">(.*?)</pre>', result.stdout, re.S)
    assert found, "the page never finished loading:\n" + result.stderr[-2000:]
    assert json.loads(html.unescape(found.group(1))) == []
    # WebGL (the parallel coordinates) on a software renderer makes Chromium log its GL driver's
    # performance notes ("GPU stall due to ReadPixels") as console lines: the renderer's, not the page's.
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line and "GL Driver Message" not in line]
    assert console == []
    drawn = [s for s in report.sections if not s.skipped and figure_for(s, report) is not None]
    assert [s.key for s in drawn] == ["weak", "strong", "target", "tradeoff", "curves", "grid", "lifetimes",
                                      "parallel", "importance", "history", "slices"]
    for section in drawn:  # plotly drew an SVG inside each figure's div
        div = re.search(rf'<div id="figure-{section.key}"[^>]*class="[^"]*js-plotly-plot', result.stdout)
        assert div, f"figure {section.key} was not drawn"
    assert result.stdout.count('class="main-svg"') >= 2 * len(drawn)


def test_dashboard_screenshot_for_a_human(dashboard, tmp_path):
    page, _ = dashboard
    shot = tmp_path / "dashboard.png"
    result = chromium(page.as_uri(), tmp_path / "profile", "--hide-scrollbars", "--window-size=1280,4200",
                      f"--screenshot={shot}")
    assert result.returncode == 0 and shot.is_file(), result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 4200)
    assert len(data) > 100_000, "the screenshot is nearly blank"  # a white page compresses to ~20 kB
    keep = os.environ.get("SCALING_STUDY_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(shot, Path(keep) / shot.name)
    print(f"screenshot: {shot}")
