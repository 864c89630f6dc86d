"""The service's pages in real headless Chromium (Debian's `chromium`, driven by Playwright for
Python through `executable_path`; no browser is ever downloaded), against a real uvicorn server.

Without Ray: the pages render with no console errors, a study written while a page is open
appears without a reload, an evaluation appended while a study page is open shows up, a trial
is stopped from the page, best.yaml downloads and validates, a bad submission names its key.
With a local Ray (marked `ray`): a real tiny sweep is watched live and steered from its page, and
a shipped space is submitted from the submit page through Ray's Job Submission API.
"""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import yaml

from fixtures.service import rows, write_records, write_run
from scaling_study.config import load_job
from scaling_study.tune import steer

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "") if p and os.path.exists(p)), None)
playwright = pytest.importorskip("playwright.sync_api", reason="needs Playwright for Python (the test extra)")
pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium")]
ROOT = Path(__file__).resolve().parents[1]
LIVE_S = 2.0  # an evaluation must show in an open page within about this long
WAIT_MS = 15_000  # Playwright's patience for anything else (a slow shared machine)


@contextlib.contextmanager
def serving(app):
    """The app on uvicorn on a free loopback port, in a thread; yields its base URL."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def browser():
    """One Chromium and one browsing context for the module (plotly.js is fetched once); every
    `expect` waits up to WAIT_MS (Playwright's 5 s is too short on busy shared cores)."""
    playwright.expect.set_options(timeout=WAIT_MS)
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--headless"])
        context = chromium.new_context(accept_downloads=True)
        yield context
        context.close()
        chromium.close()


@pytest.fixture
def page(browser):
    """A page whose console errors and uncaught exceptions fail the test."""
    page = browser.new_page()
    page.set_default_timeout(WAIT_MS)
    errors = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"uncaught: {e}"))
    yield page
    page.close()
    assert errors == []


@pytest.fixture
def site(live_root):
    from scaling_study.service.app import create_app

    with serving(create_app([str(live_root)])) as url:
        yield url


def test_every_page_renders_with_no_console_errors(site, page):
    for path, ready in (("/", "#studies tbody tr"), ("/studies/0:live", "#figure-weak .main-svg"),
                        ("/studies/0:solo", "#curves .main-svg"), ("/submit", "#space option"),
                        ("/compare?ids=0:live,0:solo", "#compare-curves .main-svg")):
        page.goto(site + path)
        page.wait_for_selector(ready, state="attached")
    page.goto(site + "/studies/0:live")
    page.wait_for_selector("#curves .main-svg")
    assert page.locator("#curves .scatterlayer .trace").count() == 3  # one line per trial, from figure_for


def test_the_studies_list_sorts_filters_and_grows_without_a_reload(site, page, live_root):
    expect = playwright.expect
    page.goto(site + "/")
    rows_ = page.locator("#studies tbody tr")
    expect(rows_).to_have_count(2)
    page.fill("#filter", "solo")
    expect(rows_).to_have_count(1)
    page.fill("#filter", "")
    page.click("#studies th[data-key=name]")
    expect(rows_.first).to_have_attribute("data-id", "0:live")  # a..z
    page.click("#studies th[data-key=name]")
    expect(rows_.first).to_have_attribute("data-id", "0:solo")  # z..a
    page.evaluate("window.__sameDocument = true")
    write_run(live_root / "fresh")
    page.wait_for_selector("#studies tbody tr[data-id='0:fresh']")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened


def test_a_study_page_shows_new_evaluations_and_stops_a_trial(site, page, live_root):
    page.goto(site + "/studies/0:live")
    t1 = page.locator("#trials tr[data-trial=t1]")
    t1.locator("td[data-col=n_evals]:has-text('2')").wait_for()
    page.wait_for_selector("#curves .main-svg")
    page.evaluate("window.__sameDocument = true")
    write_records(live_root / "live" / "trials" / "t1", rows("t1", stop_at=6_000))
    written = time.monotonic()
    t1.locator("td[data-col=n_evals]:has-text('3')").wait_for()
    assert time.monotonic() - written < LIVE_S + 1.0  # pushed, not polled
    assert page.evaluate("window.__sameDocument") is True
    page.wait_for_function("document.querySelector('#curves').data.find(t => t.name === 't1').x.length === 3")
    t1.locator("button.stop-trial").click()
    t1.locator("text=stop requested").wait_for()
    assert steer.pending_requests(live_root / "live") == (False, {"t1"})


def test_best_yaml_downloads_and_validates(site, page, tmp_path):
    page.goto(site + "/studies/0:live")
    page.fill("#export input[name=workers]", "4")
    with page.expect_download() as download:
        page.click("#best-link")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    job = load_job(path)
    assert path.name == "best_live_4w.yaml" and job.scaling.num_workers == 4


def test_a_bad_submission_shows_the_key_inline(site, page):
    page.goto(site + "/submit")
    page.select_option("#space", "weak_scaling_small.yaml")
    page.fill("#overrides", "set.train.steps=-5")
    page.click("#check")
    error = page.locator("#errors li").first
    error.wait_for()
    assert "train.steps" in error.inner_text()


# --- with a local Ray ----------------------------------------------------------------------------

SWEEP_SCRIPT = """
import sys
from scaling_study.tune import sweep

sweep.run_sweep(sys.argv[1], address=sys.argv[2])
"""


def tiny_space(tmp_path, synth_dir, results: Path) -> Path:
    from conftest import tiny_job_data

    base = tiny_job_data(synth_dir, name="base", scaling={"num_workers": 1}, data={"max_eval_examples": 8},
                         train={"global_batch": None, "per_worker_batch": 4, "grad_accum": 1, "steps": 400},
                         eval={"every_steps": 2, "target": {"metric": "loss", "value": 0.01}})
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    space = {"name": "watched", "base": str(tmp_path / "base.yaml"), "output": {"dir": str(results)},
             "parameters": {"optimizer.lr": {"distribution": "grid", "values": [0.01, 0.02]}},
             "search": {"algorithm": "grid"}, "scheduler": {"name": "fifo", "metric": "loss"},
             "max_concurrent_trials": 1, "failure": {"max_failures": 0}}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(space))
    return path


@pytest.fixture(scope="module")
def venv_on_path():
    """This Python's folder first on PATH before the local Ray starts: the jobs it runs call
    `python -m scaling_study.cli`, as `serve` arranges for the Ray it starts itself."""
    saved = os.environ["PATH"]
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), saved])
    yield
    os.environ["PATH"] = saved


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_real_sweep_is_watched_and_steered_from_its_page(tmp_path, synth_dir, venv_on_path, local_ray, page):
    from scaling_study.service.app import create_app

    results = tmp_path / "sweeps"
    results.mkdir()
    address = local_ray.get_runtime_context().gcs_address
    with serving(create_app([str(results)])) as site:
        page.goto(site + "/")
        page.wait_for_selector("#empty:not([hidden])")  # the snapshot has arrived: no studies yet
        page.evaluate("window.__sameDocument = true")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        sweep = subprocess.Popen([sys.executable, "-c", textwrap.dedent(SWEEP_SCRIPT),
                                  str(tiny_space(tmp_path, synth_dir, results)), address],
                                 cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            _watch_and_steer(page, site, results, sweep)
        except BaseException:
            if sweep.poll() is None:
                sweep.kill()
            print(sweep.communicate(timeout=30)[0][-5000:])  # the sweep's own account, for the report
            raise
        output = sweep.communicate(timeout=60)[0]
        assert sweep.returncode == 0, output[-3000:]


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_shipped_space_is_submitted_from_the_page(tmp_path, venv_on_path, page):
    """Through the service's own local Ray (a `ray start --head` it starts on the first submission
    and stops when it shuts down), as `scaling-study serve` without --address runs."""
    from scaling_study.service.app import create_app
    from scaling_study.service.local_ray import processes

    results = tmp_path / "sweeps"
    results.mkdir()
    app = create_app([str(results)])
    with serving(app) as site:
        _submit_from_the_page(page, site, results, app.state.launcher)
        local = app.state.launcher._local
        assert local is not None and local.running()
        page.goto("about:blank")  # its event streams closed: the server's shutdown need not wait for them
    deadline = time.monotonic() + 60
    while (local.running() or processes(local.marker)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not local.running() and processes(local.marker) == []  # the service's shutdown stopped it


def _watch_and_steer(page, site, results, sweep):
    row = page.locator("#studies tbody tr[data-id='0:watched']")
    row.wait_for(timeout=120_000)  # the sweep's folder appears: no reload
    assert page.evaluate("window.__sameDocument") is True
    row.locator("a").click()
    first = page.locator("#trials tbody tr[data-state=running]").first
    first.wait_for(timeout=120_000)
    trial = first.get_attribute("data-trial")
    evals = page.locator(f"#trials tr[data-trial='{trial}'] td[data-col=n_evals]")
    page.wait_for_function(f"Number(document.querySelector(\"#trials tr[data-trial='{trial}'] td[data-col=n_evals]\")"
                           f".textContent) >= 2", timeout=120_000)  # evaluations arrive while the page is open
    assert int(evals.inner_text()) >= 2
    page.locator(f"#trials tr[data-trial='{trial}'] button.stop-trial").click()
    page.locator(f"#trials tr[data-trial='{trial}'][data-state=stopped_by_user]").wait_for(timeout=60_000)
    assert "stopped by a user" in page.locator(f"#trials tr[data-trial='{trial}']").inner_text()
    page.once("dialog", lambda dialog: dialog.accept())  # Stop asks first
    page.click("#stop-sweep")  # the other trial is pending or starting: the sweep ends resumable
    page.wait_for_selector("#status:has-text('stopped by a user')", timeout=120_000)
    sweep.wait(timeout=120)
    assert (results / "watched" / "trials" / trial / steer.STOPPED_BY_USER).exists()


def _submit_from_the_page(page, site, results, launcher):
    from scaling_study.tune import submit as ray_jobs

    page.goto(site + "/submit")
    page.select_option("#space", "weak_scaling_small.yaml")
    page.fill("#overrides", "name=submitted\nset.train.steps=4\nstudy.workers=[1]\nstudy.seeds=[0]")
    page.click("#launch")
    page.wait_for_url("**/studies/0:submitted", timeout=120_000)
    page.locator("#job").wait_for()
    job_id = yaml.safe_load((results / "submitted" / "submission.json").read_text())["job_id"]
    client = launcher.client(start=False)  # the Ray the service submitted to
    try:
        status = ray_jobs.wait_for(client, job_id, timeout_s=5)
        assert status in ("PENDING", "RUNNING", "SUCCEEDED"), client.get_job_logs(job_id)
        page.locator("#job-log:not(:empty)").wait_for(timeout=120_000)  # its log streams on the page
        page.goto(site + "/")
        page.wait_for_selector("#studies tbody tr[data-id='0:submitted']")
    finally:
        ray_jobs.stop(client, job_id)
