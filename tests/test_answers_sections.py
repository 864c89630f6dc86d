"""The answers' dashboard sections compute their tables from records and draw them."""
import pandas as pd
import pytest

from scaling_study.answers import figures, sections
from scaling_study.answers.links import parse_cluster
from scaling_study.answers.recommend import Plan
from scaling_study.errors import UserError
from scaling_study.results.targets import make_target
from test_answers_recommend import records

TARGET = make_target("f1", 88)
PLAN = Plan(cluster=parse_cluster("nvlink4+8xnet400"), grad_bytes=4e8)


def with_noise(table: pd.DataFrame) -> pd.DataFrame:
    noisy = table["optimizer"] == "lamb"
    return table.assign(grad_noise_scale=table["global_batch"].where(noisy).astype(float))


def test_noise_section_and_figure():
    tables, notes = sections.noise_section(with_noise(records()))
    assert set(tables["noise_scale"]["run"]) == {r for r in records()["run"] if r.startswith("lamb")}
    assert len(notes) == 1 and "adamw-32" in notes[0]
    fig = figures.noise_figure(tables)
    assert len(fig.data) == tables["noise_scale"]["run"].nunique()
    # one legend entry per optimizer, every line in its optimizer's colour
    assert [t.name for t in fig.data if t.showlegend] == ["lamb"]
    assert len({t.line.color for t in fig.data}) == 1
    with pytest.raises(UserError, match="grad_noise_scale"):
        sections.noise_section(records())


def test_tradeoff_section_and_figure():
    tables, _ = sections.tradeoff_section(with_noise(records()), TARGET)
    fits = tables["tradeoff_fit"].set_index("optimizer")
    assert fits.loc["adamw", "s_min"] == pytest.approx(2 * fits.loc["lamb", "s_min"], rel=0.05)
    assert {"tradeoff_holdout", "tradeoff_curve"} <= set(tables)
    fig = figures.tradeoff_figure(tables)
    assert [t.name for t in fig.data if t.mode == "markers"] == ["adamw", "lamb"]
    # each measured point carries the interval of its runs' crossing as an error bar
    assert all(t.error_y.array is not None for t in fig.data if t.mode == "markers")
    edge = tables["steps_to_target"].set_index(["optimizer", "global_batch"])["lr_edge"]
    assert (edge == "low").any()  # LAMB's best LR is the lower of the two tried
    for trace in (t for t in fig.data if t.mode == "markers"):
        hollow = [s == "circle-open" for s in trace.marker.symbol]
        assert hollow == [edge[(trace.name, b)] != "" for b in trace.x]
    assert any(t.fill == "tonexty" for t in fig.data)  # the fit's bootstrap band
    fitted = [t for t in fig.data if t.mode == "lines" and t.name and "S_min" in t.name and t.showlegend]
    perfect = {t.name: t for t in fig.data if t.name and t.name.endswith("perfect scaling")}
    assert len(fitted) == 2 and set(perfect) == {"adamw: perfect scaling", "lamb: perfect scaling"}
    # Perfect scaling halves the steps per doubling of the batch, from the smallest batch's point.
    steps = perfect["lamb: perfect scaling"].y
    assert all(a == pytest.approx(2 * b) for a, b in zip(steps, steps[1:]))
    assert list(fig.layout.xaxis.tickvals) == sorted(tables["steps_to_target"]["global_batch"].unique())
    # B_crit and B_noise marks: a log axis places annotations at log10(x), lines at x.
    lines = sorted(shape.x0 for shape in fig.layout.shapes)
    assert len(lines) == 3 and sorted(10 ** a.x for a in fig.layout.annotations) == pytest.approx(lines)
    with pytest.raises(UserError, match="target"):
        sections.tradeoff_section(records(), None)


def test_a_batch_no_setting_took_to_the_target_is_marked_along_the_top():
    tables, _ = sections.tradeoff_section(with_noise(records()), TARGET)
    points = tables["steps_to_target"]
    largest = points["global_batch"].max()
    tables = {**tables, "steps_to_target": points.assign(
        steps=points["steps"].where(points["global_batch"] != largest))}
    fig = figures.tradeoff_figure(tables)
    missed = [t for t in fig.data if t.name and t.name.endswith("not reached (censored)")]
    assert missed and all(list(t.x) == [largest] for t in missed)
    assert all(t.y[0] > tables["steps_to_target"]["steps"].max() for t in missed)
    assert figures._ticks_125(30, 700) == [50, 100, 200, 500]


def test_projection_and_recommendation_sections():
    tables, notes = sections.projection_section(records(), TARGET, PLAN, workers=(8, 64))
    projection = tables["projection"]
    assert set(projection["optimizer"]) == {"lamb", "adamw"}
    assert projection["time_to_target_s"].notna().any()
    assert "allreduce_check" in tables and any("model check" in n for n in notes)  # no 1-worker runs
    assert len(figures.projection_figure(tables).data) > 0
    rec = sections.recommendation_section(records(), TARGET, PLAN, workers=(8,))[0]["recommendation"]
    assert rec.set_index("num_workers")["basis"].to_dict() == {2: "measured", 8: "projected"}
    every = sections.recommendation_section(records(), TARGET, PLAN)[0]["recommendation"]
    # a row with a basis and an interval for every N from 1 to 1,024
    assert every["num_workers"].tolist() == [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert set(every["basis"]) == {"measured", "projected", "extrapolated"}
    assert every[["steps_lo", "steps_hi", "time_lo_s", "time_hi_s"]].notna().all().all()


def test_edge_notes_name_the_batches_whose_best_lr_is_on_the_grid_edge():
    points = pd.DataFrame({"optimizer": ["adamw", "adamw", "lamb"], "global_batch": [32, 64, 32],
                           "lr_edge": ["low", "", ""]})
    assert sections.edge_notes(points) == [
        "adamw: the best LR is on the edge of its grid at batch 32 (low): a wider grid could lower those "
        "batches' steps"]


def test_a_projection_without_time_to_target_says_why_instead_of_an_empty_chart():
    tables, _ = sections.projection_section(records(), TARGET, PLAN, workers=(8, 64))
    no_time = tables["projection"].drop(columns=["time_to_target_s"])
    fig = figures.projection_figure({**tables, "projection": no_time})
    assert [a.text for a in fig.layout.annotations if a.text == figures.NO_TIME_TO_TARGET]
    with_time = figures.projection_figure(tables)
    assert not [a for a in with_time.layout.annotations if a.text == figures.NO_TIME_TO_TARGET]
