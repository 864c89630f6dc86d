"""The study service's pages in real headless Chromium (fixtures, server and browser as in
test_service_browser.py): the trial table (sort, search, state filter, chosen columns, the best
trial marked, brushing), a trial's page, planned trials, Stop and Resume, imported records, the
exploring views, the submit page's preview, compare, notes and tags, and the recommendation panel."""
import pytest

from test_service_browser import CHROMIUM, WAIT_MS, browser, page, playwright, serving  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.browser,
              pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium: apt-get install -y chromium")]


def _launcher():
    """A Launcher that reaches no Ray: a page of a submitted study follows its job's log, which
    would otherwise start a local Ray in the test process."""
    from scaling_study.service.launch import Launcher

    class Quiet(Launcher):
        def job_address(self):
            return "http://127.0.0.1:9"

        async def tail(self, job_id):
            yield f"{job_id}: sweep started\n"

        def job(self, submission):
            return {"job_id": submission.get("job_id"), "status": "RUNNING", "message": ""}

    return Quiet()


def create_app(roots):
    from scaling_study.service import app

    return app.create_app(roots, launcher=_launcher())


@pytest.fixture
def site(live_root):

    trial = live_root / "live" / "trials" / "t0"
    (trial / "checkpoint_2026-01-01_00-00-00.000001").mkdir()
    (trial / "checkpoint_2026-01-01_00-00-00.000001" / "state.json").write_text("{}")
    with serving(create_app([str(live_root)])) as url:
        yield url


def _ids(page) -> list[str]:
    """The trials in the table's order, without the row of the trial not made yet (`planned-1`)."""
    ids = page.locator("#trials tbody tr").evaluate_all("rows => rows.map(r => r.dataset.trial)")
    return [i for i in ids if not i.startswith("planned-")]


def test_the_trial_table_sorts_searches_filters_and_marks_the_best(site, page):
    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(4)  # 4 planned: one not made yet
    expect(page.locator("#trials tr[data-trial=planned-1]")).to_have_attribute("data-state", "pending")
    best = page.evaluate("fetch('/api/studies/0:live').then(r => r.json()).then(d => d.best.trial_id)")
    expect(page.locator("#trials tbody tr.best")).to_have_attribute("data-trial", best)
    expect(page.locator("#trials tbody tr.best")).to_contain_text("★ best")
    assert "null" not in page.locator("#trials tbody").inner_text()
    page.click("#trials th[data-col=metric]")  # ascending: the best F1 last
    expect(page.locator("#trials th[data-col=metric]")).to_have_class("sorted-asc")
    assert _ids(page)[-1] == best
    page.click("#trials th[data-col=metric]")
    assert _ids(page)[0] == best
    page.click("#trials th[data-col='p:optimizer.lr']")
    assert _ids(page)[-1] == "t2"  # 2e-3 above 1e-3
    page.fill("#trial-filter", "adamw")
    expect(rows).to_have_count(1)
    expect(page.locator("#trial-count")).to_have_text("1 of 4 trials")
    page.fill("#trial-filter", "")
    page.select_option("#trial-state", "stopped")
    expect(rows).to_have_count(1)
    assert _ids(page) == ["t0"]


def test_columns_are_chosen_and_kept(site, page):
    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    expect(page.locator("#trials th[data-col=n_evals]")).to_have_count(1)
    expect(page.locator("#trials th[data-col=num_workers]")).to_have_count(0)
    page.click("#columns summary")
    page.uncheck("#column-choices input[data-col=n_evals]")
    page.check("#column-choices input[data-col=num_workers]")
    expect(page.locator("#trials th[data-col=n_evals]")).to_have_count(0)
    expect(page.locator("#trials tr[data-trial=t1] td[data-col=num_workers]")).to_have_text("2")
    page.reload()
    expect(page.locator("#trials tr[data-trial=t1] td[data-col=num_workers]")).to_have_text("2")
    expect(page.locator("#trials th[data-col=n_evals]")).to_have_count(0)
    page.evaluate("localStorage.clear()")


def test_a_trial_page_shows_its_parameters_curves_job_checkpoint_and_log(site, page):
    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    page.click("#trials tr[data-trial=t0] td[data-col=trial_id] a")
    page.wait_for_url("**/trials/t0")
    expect(page.locator("#params")).to_contain_text("optimizer.lr")
    expect(page.locator("#params")).to_contain_text("lamb")
    page.wait_for_selector("#curve-f1 .main-svg")
    page.wait_for_selector("#curve-loss .main-svg")
    assert page.evaluate("document.querySelector('#curve-f1').data[0].x.length") == 3
    expect(page.locator("#trial-state")).to_have_text("stopped")
    expect(page.locator("#job-yaml")).to_contain_text("name: t0")
    link = page.locator("#checkpoints a")
    expect(link).to_have_text("checkpoint_2026-01-01_00-00-00.000001.zip")
    with page.expect_download() as download:
        link.click()
    assert download.value.suggested_filename == "t0-checkpoint_2026-01-01_00-00-00.000001.zip"
    expect(page.locator("#trial-log")).to_contain_text("No log file kept")


def test_a_just_submitted_study_shows_its_pending_trials_not_empty_axes(live_root, page):
    from test_service_lifecycle import PLANNED, _submitted

    _submitted(live_root / "ws")
    with serving(create_app([str(live_root)])) as url:
        page.goto(url + "/studies/0:ws")
        playwright.expect(page.locator("#trials tbody tr[data-state=pending]")).to_have_count(len(PLANNED))
        playwright.expect(page.locator("#curves-empty")).to_be_visible()
        playwright.expect(page.locator("#job-log")).to_have_text("job-1: sweep started\n")  # not an empty box
        assert page.locator("#job-log-empty").is_hidden()
        assert page.locator("#curves .main-svg").count() == 0


def test_stopping_asks_first_and_a_stopped_sweep_resumes_from_its_page(live_root, page, monkeypatch):
    from test_service_lifecycle import _stopped_by_user, _submitted

    from scaling_study.tune import steer
    from scaling_study.tune import submit as ray_jobs

    expect = playwright.expect
    with serving(create_app([str(live_root)])) as url:
        page.goto(url + "/studies/0:live")
        page.once("dialog", lambda d: d.dismiss())
        page.click("#stop-sweep")
        expect(page.locator("#stop-sweep")).to_be_enabled()
        assert steer.pending_requests(live_root / "live") == (False, set())  # dismissed: nothing asked
        page.once("dialog", lambda d: d.accept())
        page.click("#stop-sweep")
        expect(page.locator("#stop-note")).to_contain_text("stop requested")
        expect(page.locator("#stop-sweep")).to_be_hidden()
        assert steer.pending_requests(live_root / "live")[0] is True

        sweep = live_root / "live"
        _stopped_by_user(sweep)
        _submitted(sweep)
        (sweep / "tuner.pkl").write_bytes(b"state")  # as a sweep written before layout.TUNE_DIR keeps it
        monkeypatch.setattr(ray_jobs, "submit", lambda *a, **kw: "job-2")
        page.goto(url + "/studies/0:live")
        expect(page.locator("#status")).to_have_text("stopped by a user")
        page.click("#resume-sweep")
        expect(page.locator("#stop-note")).to_contain_text("resumed as Ray job job-2")


def test_page_texts_name_no_flags_and_report_notes_fold_away(site, browser):
    expect = playwright.expect
    page = browser.new_page()  # the refused export logs its 400 to the console, as a browser does
    uncaught = []
    page.on("pageerror", lambda e: uncaught.append(str(e)))
    page.goto(site + "/studies/0:live")
    page.wait_for_selector("#figure-weak .main-svg")
    assert page.locator("#sections details.notes").count() >= 1
    assert page.locator("#sections details.notes[open]").count() == 0  # folded until asked for
    page.fill("#export input[name=target]", "99.5")  # a target no trial reached: the export refuses
    page.click("#best-link")
    error = page.locator("#export-error")
    expect(error).to_be_visible()
    assert "target" in error.inner_text() and "--" not in error.inner_text()
    page.close()
    assert uncaught == []


def test_imported_records_show_finished_with_nothing_to_steer(live_root, page):
    import pandas as pd
    from fixtures.service import rows

    (live_root / "imported").mkdir()
    pd.concat([rows("t0"), rows("t1")]).to_csv(live_root / "imported" / "records.csv", index=False)
    with serving(create_app([str(live_root)])) as url:
        page.goto(url + "/studies/0:imported")
        expect = playwright.expect
        expect(page.locator("#trials tbody tr")).to_have_count(2)
        expect(page.locator("#status")).to_have_text("finished")
        expect(page.locator("#study-kind")).to_have_text("imported records")
        assert page.locator("#stop-sweep").is_hidden() and page.locator("#resume-sweep").is_hidden()
        assert page.locator("button.stop-trial").count() == 0


def test_explore_views_are_drawn_and_brushing_filters_the_trial_table(site, page):
    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    for key in ("parallel", "history", "slices"):
        page.wait_for_selector(f"#explore-sections #figure-{key} .main-svg")
    expect(page.locator("#section-importance .skipped")).to_contain_text("at least 4 trials")  # 3 trials so far
    labels = page.evaluate("document.querySelector('#figure-parallel').data[0].dimensions.map(d => d.label)")
    assert "optimizer.lr (log)" in labels
    rows = page.locator("#trials tbody tr")
    expect(rows).to_have_count(4)
    # Brush the LR axis around 2e-3 (log10 = -2.7), as a drag along it does: only t2 stays.
    i = labels.index("optimizer.lr (log)")
    page.evaluate(f"Plotly.restyle('figure-parallel', {{'dimensions[{i}].constraintrange': [[-2.8, -2.6]]}})")
    expect(rows).to_have_count(1)
    assert rows.first.get_attribute("data-trial") == "t2"
    expect(page.locator("#trial-count")).to_contain_text("brushed")
    page.evaluate(f"Plotly.restyle('figure-parallel', {{'dimensions[{i}].constraintrange': [null]}})")
    expect(rows).to_have_count(4)


def test_the_submit_page_previews_the_small_default_and_completes_override_keys(live_root, page):
    from test_service_lifecycle import _past_sweep

    from scaling_study.service.launch import shipped_spaces

    expect = playwright.expect
    _past_sweep(live_root / "q1", "quickstart.yaml", trials=8, seconds=480.0)
    with serving(create_app([str(live_root)])) as url:
        page.goto(url + "/submit")
        expect(page.locator("#space")).to_have_value("quickstart.yaml")
        expect(page.locator("#preview-trials")).to_contain_text("8 trials")
        expect(page.locator("#preview-estimate")).to_contain_text("About 8 min, from 1 finished sweep")
        whole = next(s["description"] for s in shipped_spaces() if s["name"] == "quickstart.yaml")
        expect(page.locator("#space-description")).to_have_text(whole)  # its whole comment, not cut mid-word
        expect(page.locator("#override-keys option[value='set.train.steps']")).to_have_count(1)
        page.fill("#override-key", "set.train.steps")
        expect(page.locator("#override-help")).to_contain_text("Optimizer steps")
        page.fill("#override-value", "20")
        page.click("#add-override")
        expect(page.locator("#overrides")).to_have_value("set.train.steps=20")
        page.select_option("#space", "weak_scaling_small.yaml")
        expect(page.locator("#preview-trials")).to_contain_text("4 trials")
        expect(page.locator("#preview-estimate")).to_contain_text("No finished sweep of this space")


def test_compare_colours_each_study_groups_as_chosen_and_shows_only_what_differs(site, page):
    expect = playwright.expect
    page.goto(site + "/compare?ids=0:live,0:solo")
    page.wait_for_selector("#compare-curves .main-svg")
    legend = "document.querySelector('#compare-curves').data.filter(t => t.showlegend).map(t => t.name)"
    assert page.evaluate(legend) == ["live", "solo"]
    colours = page.evaluate("Object.fromEntries(document.querySelector('#compare-curves').data"
                            ".map(t => [t.hovertemplate.split(' · ')[0], t.line.color]))")
    assert len(set(colours.values())) == 2  # one colour per study, whatever its trials
    page.select_option("#group-by", "optimizer")
    page.wait_for_function(f"{legend}.length === 2 && {legend}.every(n => n.startsWith('optimizer = '))")
    page.select_option("#group-by", "setting")
    page.wait_for_function(f"{legend}.length === 4")  # live's 3 settings, and solo's run
    rows = page.locator("#settings tbody tr")
    expect(page.locator("#settings tr[data-key='optimizer.lr']")).to_have_count(1)
    expect(page.locator("#settings tr[data-key=task]")).to_have_count(0)
    shown = rows.count()
    page.uncheck("#only-differs")
    expect(page.locator("#settings tr[data-key=task]")).to_have_count(1)
    assert rows.count() > shown


def test_notes_and_tags_are_saved_from_the_pages_and_searched_in_the_lists(site, page, live_root):
    import json

    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    page.click("#study-notes summary")
    page.fill("#study-notes .note", "AdamW diverges above 1e-3")
    page.fill("#study-notes .tags-input", "baseline, adamw-lr")
    page.click("#study-notes .save-notes")
    expect(page.locator("#study-notes .notes-status")).to_have_text("saved")
    expect(page.locator("#study-notes summary .tag")).to_have_count(2)
    page.goto(site + "/studies/0:live/trials/t1")
    page.click("#trial-notes summary")
    page.fill("#trial-notes .note", "the diverging one")
    page.fill("#trial-notes .tags-input", "diverged")
    page.click("#trial-notes .save-notes")
    expect(page.locator("#trial-notes .notes-status")).to_have_text("saved")
    assert json.loads((live_root / "live" / "notes.json").read_text())["trials"]["t1"]["tags"] == ["diverged"]
    page.goto(site + "/studies/0:live")
    page.fill("#trial-filter", "diverged")
    expect(page.locator("#trials tbody tr")).to_have_count(1)
    expect(page.locator("#trials tr[data-trial=t1] .tag")).to_have_text("diverged")
    page.goto(site + "/")
    expect(page.locator("#studies tr[data-id='0:live'] .tag")).to_have_count(2)
    page.fill("#filter", "adamw-lr")
    expect(page.locator("#studies tbody tr")).to_have_count(1)
    page.fill("#filter", "diverges above")
    expect(page.locator("#studies tbody tr")).to_have_attribute("data-id", "0:live")


def test_the_recommendation_panel_answers_for_the_chosen_gpus_interconnect_and_device(site, page):
    expect = playwright.expect
    page.goto(site + "/studies/0:live")
    expect(page.locator("#recommend-note")).to_contain_text("For 64 GPUs to f1 ≥ 80, from the runs on cpu", timeout=WAIT_MS)
    expect(page.locator("#recommend-table tr[data-key=basis]")).to_have_count(1)
    expect(page.locator("#recommend-form select[name=device] option")).to_have_text(["cpu"])
    page.fill("#recommend-form input[name=gpus]", "2")
    page.select_option("#recommend-form select[name=cluster]", "pcie4")
    page.click("#recommend-form button")
    expect(page.locator("#recommend-note")).to_contain_text("For 2 GPUs", timeout=WAIT_MS)
    assert "--" not in page.locator("#recommend-note").inner_text()
    page.fill("#recommend-form input[name=gpus]", "64")
    page.select_option("#recommend-form select[name=profile]", "h100-sxm-bf16")
    page.click("#recommend-form button")
    expect(page.locator("#recommend-note")).to_contain_text("For 64 GPUs", timeout=WAIT_MS)
    expect(page.locator("#recommend-note")).to_contain_text("with the compute of h100-sxm-bf16")
